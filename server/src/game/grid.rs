//! Uniform spatial grid for projectile hit tests.

use glam::IVec2;
use shared::rules::{ARENA_HEIGHT, ARENA_WIDTH};

use super::world::EntityKey;

/// Cell edge in quanta. It must be at least the largest radius sum tested
/// (player + projectile = 80 quanta) so that a 3x3 block of cells holds every
/// candidate.
const CELL: i32 = 256;
const COLS: usize = (ARENA_WIDTH / CELL + 1) as usize;
const ROWS: usize = (ARENA_HEIGHT / CELL + 1) as usize;

/// Fighters bucketed by cell with a counting sort: two flat arrays rebuilt
/// each tick, no allocation once warm, and cost linear in the entity count.
#[derive(Debug, Default)]
pub(crate) struct Grid {
    /// `starts[c]..starts[c + 1]` indexes `items` for cell `c`.
    starts: Vec<u32>,
    items: Vec<(IVec2, EntityKey)>,
    /// Scratch: cell of each inserted item, in insertion order.
    cells: Vec<u32>,
    staged: Vec<(IVec2, EntityKey)>,
}

fn cell_of(pos: IVec2) -> (usize, usize) {
    let cx = (pos.x.clamp(0, ARENA_WIDTH) / CELL) as usize;
    let cy = (pos.y.clamp(0, ARENA_HEIGHT) / CELL) as usize;
    (cx.min(COLS - 1), cy.min(ROWS - 1))
}

impl Grid {
    /// Starts a rebuild.
    pub(crate) fn clear(&mut self) {
        self.staged.clear();
    }

    /// Stages one fighter.
    pub(crate) fn push(&mut self, pos: IVec2, key: EntityKey) {
        self.staged.push((pos, key));
    }

    /// Buckets the staged fighters.
    pub(crate) fn build(&mut self) {
        self.starts.clear();
        self.starts.resize(COLS * ROWS + 1, 0);
        self.cells.clear();
        for &(pos, _) in &self.staged {
            let (cx, cy) = cell_of(pos);
            let c = cy * COLS + cx;
            self.cells.push(c as u32);
            self.starts[c + 1] += 1;
        }
        for c in 0..COLS * ROWS {
            self.starts[c + 1] += self.starts[c];
        }
        self.items.clear();
        self.items
            .resize(self.staged.len(), (IVec2::ZERO, EntityKey::default()));
        // Fill each cell from its end backwards, reusing `starts` as cursors,
        // then `starts[c]` ends up at the cell's first item again.
        for (i, &c) in self.cells.iter().enumerate().rev() {
            let c = c as usize + 1;
            self.starts[c] -= 1;
            self.items[self.starts[c] as usize] = self.staged[i];
        }
        // After the loop `starts[c + 1]` is the start of cell c; shift down.
        self.starts.remove(0);
        self.starts.push(self.items.len() as u32);
    }

    /// Every fighter in the 3x3 cells around `pos`.
    pub(crate) fn near(&self, pos: IVec2) -> impl Iterator<Item = &(IVec2, EntityKey)> + '_ {
        let (cx, cy) = cell_of(pos);
        let xs = cx.saturating_sub(1)..=(cx + 1).min(COLS - 1);
        (cy.saturating_sub(1)..=(cy + 1).min(ROWS - 1)).flat_map(move |y| {
            let row = y * COLS;
            let (a, b) = (
                self.starts[row + *xs.start()],
                self.starts[row + *xs.end() + 1],
            );
            self.items[a as usize..b as usize].iter()
        })
    }
}

#[cfg(test)]
mod tests {
    use slotmap::SlotMap;

    use super::*;

    #[test]
    fn near_finds_exactly_the_neighbouring_cells() {
        let mut keys: SlotMap<EntityKey, ()> = SlotMap::with_key();
        let mut grid = Grid::default();
        grid.clear();
        let points = [
            IVec2::new(10, 10),
            IVec2::new(CELL + 5, 10),
            IVec2::new(3 * CELL, 3 * CELL),
            IVec2::new(ARENA_WIDTH, ARENA_HEIGHT),
            IVec2::new(-50, -50),
        ];
        let ks: Vec<_> = points.iter().map(|_| keys.insert(())).collect();
        for (p, k) in points.iter().zip(&ks) {
            grid.push(*p, *k);
        }
        grid.build();
        let found: Vec<_> = grid.near(IVec2::new(0, 0)).map(|(_, k)| *k).collect();
        assert_eq!(found.len(), 3);
        for k in [ks[0], ks[1], ks[4]] {
            assert!(found.contains(&k));
        }
        let far: Vec<_> = grid
            .near(IVec2::new(ARENA_WIDTH - 1, ARENA_HEIGHT - 1))
            .map(|(_, k)| *k)
            .collect();
        assert_eq!(far, vec![ks[3]]);
    }
}
