//! Per-thread instances of reused plugins.
//!
//! Each worker thread keeps at most one started instance per compiled
//! plugin, keyed by the plugin's unique id. An entry holds only a `Weak` to
//! its plugin: when any plugin is dropped (config reload) a global counter
//! moves, and each thread drops the entries of dead plugins the next time it
//! touches its cache. An instance is taken out of the cache for the duration
//! of a call, so nothing stays borrowed while guest code runs, and put back
//! only when the call left it sound.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::instance::{plugins_dropped, Live, Shared};

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { seen_dropped: 0, slots: Vec::new() }) };
}

struct Cache {
    /// [`plugins_dropped`] when this thread last swept.
    seen_dropped: u64,
    slots: Vec<Slot>,
}

struct Slot {
    id: u64,
    owner: Weak<Shared>,
    live: Option<Live>,
}

impl Cache {
    fn sweep_if_needed(&mut self) {
        let dropped = plugins_dropped();
        if dropped != self.seen_dropped {
            self.seen_dropped = dropped;
            self.slots.retain(|slot| slot.owner.strong_count() > 0);
        }
    }
}

/// This thread's instance of `plugin`, if it has one (removed from the cache
/// until [`put`] returns it). `None` also during thread teardown.
pub(crate) fn take(plugin: &Arc<Shared>) -> Option<Live> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            cache.sweep_if_needed();
            cache
                .slots
                .iter_mut()
                .find(|slot| slot.id == plugin.id)
                .and_then(|slot| slot.live.take())
        })
        .ok()
        .flatten()
}

/// Keeps `live` as this thread's instance of `plugin`. During thread
/// teardown the instance is simply dropped.
pub(crate) fn put(plugin: &Arc<Shared>, live: Live) {
    let leftover = CACHE.try_with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return Some(live);
        };
        cache.sweep_if_needed();
        match cache.slots.iter_mut().find(|slot| slot.id == plugin.id) {
            Some(slot) => slot.live = Some(live),
            None => cache.slots.push(Slot {
                id: plugin.id,
                owner: Arc::downgrade(plugin),
                live: Some(live),
            }),
        }
        None
    });
    // Dropped outside the borrow: an instance never re-enters the cache, but
    // keep the rule simple.
    drop(leftover);
}

/// Plugins with an instance cached on this thread (for tests).
#[cfg(test)]
pub(crate) fn cached_on_this_thread() -> usize {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.sweep_if_needed();
        cache.slots.iter().filter(|s| s.live.is_some()).count()
    })
}
