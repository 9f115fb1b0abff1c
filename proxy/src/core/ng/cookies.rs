//! The cookie cache: rtpengine answers a retransmitted command (same cookie from the same
//! controller) with the reply it already sent, without running the command again, so a lost
//! reply never makes an `offer` allocate twice or a `delete` fail the second time.
//!
//! Bounded: at most `capacity` replies, each kept for `ttl`; when full, the oldest goes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a reply is replayed (rtpengine keeps cookies 30 s; Kamailio retransmits within
/// its `rtpengine_tout_ms` × `rtpengine_retr`, 1 s × 5 by default).
pub const COOKIE_TTL: Duration = Duration::from_secs(30);

/// Replies kept at most (a controller sending more than this in 30 s loses only replay).
pub const COOKIE_CAPACITY: usize = 4096;

type Key = (SocketAddr, Bytes);

/// Replies by (controller address, cookie).
#[derive(Debug)]
pub struct CookieCache {
    replies: HashMap<Key, Bytes>,
    order: VecDeque<(Instant, Key)>,
    ttl: Duration,
    capacity: usize,
}

impl CookieCache {
    /// An empty cache.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        CookieCache {
            replies: HashMap::new(),
            order: VecDeque::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// The reply already sent for this cookie, if still remembered at `now`.
    pub fn get(&mut self, now: Instant, src: SocketAddr, cookie: &Bytes) -> Option<Bytes> {
        self.expire(now);
        self.replies.get(&(src, cookie.clone())).cloned()
    }

    /// Remember `reply` for this cookie.
    pub fn insert(&mut self, now: Instant, src: SocketAddr, cookie: Bytes, reply: Bytes) {
        self.expire(now);
        while self.replies.len() >= self.capacity {
            let Some((_, old)) = self.order.pop_front() else {
                break;
            };
            self.replies.remove(&old);
        }
        let key = (src, cookie);
        if self.replies.insert(key.clone(), reply).is_none() {
            self.order.push_back((now + self.ttl, key));
        }
    }

    /// Replies remembered.
    pub fn len(&self) -> usize {
        self.replies.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// When the oldest reply expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    /// Forget replies whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.replies.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // a virtual clock's origin
    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn replays_until_ttl_then_forgets() {
        let (t, src) = (t0(), "127.0.0.1:5060".parse().expect("addr"));
        let mut c = CookieCache::new(Duration::from_secs(30), 8);
        let k = Bytes::from_static(b"123_1");
        c.insert(t, src, k.clone(), Bytes::from_static(b"r"));
        assert_eq!(
            c.get(t + Duration::from_secs(29), src, &k).as_deref(),
            Some(&b"r"[..])
        );
        let other: SocketAddr = "127.0.0.1:5061".parse().expect("addr");
        assert_eq!(c.get(t, other, &k), None, "cookies are per controller");
        assert_eq!(c.get(t + Duration::from_secs(30), src, &k), None);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_oldest_evicted() {
        let (t, src) = (t0(), "127.0.0.1:5060".parse().expect("addr"));
        let mut c = CookieCache::new(COOKIE_TTL, 3);
        for i in 0..10u8 {
            c.insert(
                t,
                src,
                Bytes::from(vec![b'a' + i]),
                Bytes::from_static(b"x"),
            );
            assert!(c.len() <= 3);
        }
        assert_eq!(c.get(t, src, &Bytes::from_static(b"a")), None);
        assert!(c.get(t, src, &Bytes::from_static(b"j")).is_some());
    }
}
