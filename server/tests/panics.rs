//! A panic reaches the log as one event (`server::log_panics`), the way an
//! operator's log collector reads every other line. In a test binary of its
//! own: the panic hook is the whole process's.

mod common;

use common::Captured;

#[test]
fn a_panic_is_one_json_log_event_with_its_message_place_and_thread() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    // The server's subscriber is global too: rooms are threads of their own.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    server::log_panics();
    let ended = std::thread::Builder::new()
        .name("room-42".into())
        .spawn(|| panic!("a bug in room 42"))
        .expect("a thread")
        .join();
    assert!(ended.is_err(), "the thread panicked");
    let line = line_of(&captured);
    let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON event");
    assert_eq!(event["level"], "ERROR");
    let fields = &event["fields"];
    assert_eq!(fields["panic"], "a bug in room 42");
    assert_eq!(fields["thread"], "room-42");
    assert!(
        fields["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("server/tests/panics.rs:")),
        "{event}"
    );
}

fn line_of(captured: &Captured) -> String {
    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one event: {text}");
    lines[0].to_owned()
}
