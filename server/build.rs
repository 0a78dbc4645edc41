//! Rebuild when the embedded browser demo changes (include_dir cannot tell
//! cargo on stable).
fn main() {
    println!("cargo:rerun-if-changed=../client-demo/web");
}
