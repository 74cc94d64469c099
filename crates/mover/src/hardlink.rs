//! Hard links: the first name of a source inode that the mover reaches is copied; every other
//! name becomes a hard link to that copy, so a group of N names is one inode in the target.
//!
//! Workers reach names of one inode concurrently. The first claims the inode and copies it; the
//! others wait for that copy (a bounded wait: the copy of one file), then link to it. An inode's
//! record is dropped once all its names have been seen, so memory follows the number of linked
//! inodes still expected, not the number of files.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

/// Identifies a source inode.
pub type InodeKey = (u64, u64);

#[derive(Debug)]
enum State {
    Copying,
    Done {
        dst_rel: Vec<u8>,
        dst_ino: u64,
        remaining: u32,
    },
}

/// The run's table of hard-linked source inodes.
#[derive(Debug, Default)]
pub struct HardLinks {
    map: Mutex<HashMap<InodeKey, State>>,
    cv: Condvar,
}

/// The outcome of [`HardLinks::claim`].
#[derive(Debug)]
pub enum Claim<'a> {
    /// This name is the first reached: copy it, then call [`First::done`].
    First(First<'a>),
    /// Another name was copied already: link to it.
    Copied {
        /// The copy's path relative to the target root.
        dst_rel: Vec<u8>,
        /// The copy's inode number in the target.
        dst_ino: u64,
    },
}

/// The right and duty to copy an inode's first name. Dropped without [`First::done`] (the copy
/// failed), the next name to arrive becomes the first.
#[derive(Debug)]
pub struct First<'a> {
    table: &'a HardLinks,
    key: InodeKey,
    nlink: u32,
    finished: bool,
}

impl HardLinks {
    /// Claims the inode `key`, which has `nlink` names.
    pub fn claim(&self, key: InodeKey, nlink: u32) -> Claim<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match map.get_mut(&key) {
                None => {
                    map.insert(key, State::Copying);
                    return Claim::First(First {
                        table: self,
                        key,
                        nlink,
                        finished: false,
                    });
                }
                Some(State::Copying) => {
                    map = self.cv.wait(map).unwrap_or_else(|p| p.into_inner());
                }
                Some(State::Done {
                    dst_rel,
                    dst_ino,
                    remaining,
                }) => {
                    let claim = Claim::Copied {
                        dst_rel: dst_rel.clone(),
                        dst_ino: *dst_ino,
                    };
                    *remaining = remaining.saturating_sub(1);
                    if *remaining == 0 {
                        map.remove(&key);
                    }
                    return claim;
                }
            }
        }
    }

    /// Number of inodes whose names are still expected.
    pub fn pending(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl First<'_> {
    /// Records the copy at `dst_rel` (inode `dst_ino`) for the other names.
    pub fn done(mut self, dst_rel: Vec<u8>, dst_ino: u64) {
        let mut map = self.table.map.lock().unwrap_or_else(|p| p.into_inner());
        let remaining = self.nlink.saturating_sub(1);
        if remaining == 0 {
            map.remove(&self.key);
        } else {
            map.insert(
                self.key,
                State::Done {
                    dst_rel,
                    dst_ino,
                    remaining,
                },
            );
        }
        self.finished = true;
        drop(map);
        self.table.cv.notify_all();
    }
}

impl Drop for First<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut map = self.table.map.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(&self.key);
            drop(map);
            self.table.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_name_copies_the_others_link_and_the_record_goes_away() {
        let t = HardLinks::default();
        let Claim::First(first) = t.claim((1, 7), 3) else {
            panic!("first")
        };
        first.done(b"a/x".to_vec(), 99);
        for _ in 0..2 {
            match t.claim((1, 7), 3) {
                Claim::Copied { dst_rel, dst_ino } => {
                    assert_eq!((dst_rel.as_slice(), dst_ino), (&b"a/x"[..], 99))
                }
                Claim::First(_) => panic!("second name must link"),
            }
        }
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_failed_first_copy_hands_the_inode_to_the_next_name() {
        let t = HardLinks::default();
        let Claim::First(first) = t.claim((1, 7), 2) else {
            panic!("first")
        };
        drop(first);
        assert!(matches!(t.claim((1, 7), 2), Claim::First(_)));
    }

    #[test]
    fn a_waiting_name_links_once_the_copy_is_done() {
        let t = std::sync::Arc::new(HardLinks::default());
        let Claim::First(first) = t.claim((2, 1), 2) else {
            panic!("first")
        };
        let t2 = t.clone();
        let waiter = std::thread::spawn(move || match t2.claim((2, 1), 2) {
            Claim::Copied { dst_ino, .. } => dst_ino,
            Claim::First(_) => 0,
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        first.done(b"f".to_vec(), 5);
        assert_eq!(waiter.join().unwrap(), 5);
    }
}
