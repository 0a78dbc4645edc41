//! Compact network ids for slotmap keys.

use std::collections::VecDeque;

use shared::Tick;
use shared::snapshot::MAX_NET_ID;

use super::world::EntityKey;

/// Maps compact network ids to slotmap keys.
///
/// Slotmap keys carry a generation and are sparse; the wire wants small,
/// increasing ids (they are gap-coded). The table is indexed by id, so walking
/// it yields entities already sorted by id, with no sort per tick. Freed ids
/// are reused only after `quarantine` ticks, so a client interpolating between
/// recent snapshots never sees one id jump from a dead entity to a new one.
#[derive(Debug)]
pub(crate) struct NetIds {
    table: Vec<Option<EntityKey>>,
    free: VecDeque<(u32, Tick)>,
    quarantine: u32,
}

impl NetIds {
    pub(crate) fn new(quarantine: u32) -> Self {
        Self {
            table: Vec::new(),
            free: VecDeque::new(),
            quarantine,
        }
    }

    /// Assigns an id to `key`. `None` only when all 2^28 ids are live.
    pub(crate) fn alloc(&mut self, key: EntityKey, now: Tick) -> Option<u32> {
        let reusable = self
            .free
            .front()
            .is_some_and(|&(_, freed)| now.since(freed) >= self.quarantine as i32);
        let id = if reusable {
            self.free.pop_front().map(|(id, _)| id)?
        } else {
            let id = u32::try_from(self.table.len()).ok()?;
            if id > MAX_NET_ID {
                return None;
            }
            self.table.push(None);
            id
        };
        self.table[id as usize] = Some(key);
        Some(id)
    }

    pub(crate) fn release(&mut self, id: u32, now: Tick) {
        if let Some(slot) = self.table.get_mut(id as usize)
            && slot.take().is_some()
        {
            self.free.push_back((id, now));
        }
    }

    /// Live keys in increasing id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = EntityKey> + '_ {
        self.table.iter().filter_map(|k| *k)
    }
}

#[cfg(test)]
mod tests {
    use slotmap::SlotMap;

    use super::*;

    #[test]
    fn ids_are_compact_and_reused_only_after_quarantine() {
        let mut keys: SlotMap<EntityKey, ()> = SlotMap::with_key();
        let (a, b, c) = (keys.insert(()), keys.insert(()), keys.insert(()));
        let mut ids = NetIds::new(10);
        assert_eq!(ids.alloc(a, Tick(0)), Some(0));
        assert_eq!(ids.alloc(b, Tick(0)), Some(1));
        ids.release(0, Tick(5));
        assert_eq!(ids.alloc(c, Tick(14)), Some(2), "still in quarantine");
        ids.release(2, Tick(14));
        assert_eq!(ids.alloc(c, Tick(15)), Some(0), "quarantine over");
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![c, b]);
        ids.release(0, Tick(16));
        ids.release(0, Tick(16));
        assert_eq!(ids.free.len(), 2, "double release is ignored");
    }
}
