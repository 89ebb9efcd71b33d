//! Limits on sign-in: attempts per account and per client address, and how many password
//! hashes run at once.
//!
//! Every attempt first passes two pairs of [`governor`] quotas (GCRA), one keyed by the
//! account name as typed and one by the client's address. Each pair is a short quota and a
//! long one, so the wait grows: a few quick tries are free, then one every few seconds,
//! and once the long quota is spent, one every few minutes. A refused attempt costs no
//! hashing and is answered at once (429 with `Retry-After`); the first refusal of an
//! account in a while is audited as a lockout. Names that do not exist are limited the same
//! way, so the limits do not reveal which names do.
//!
//! Argon2 takes 19 MiB and tens of milliseconds per hash: a semaphore bounds how many run
//! at once, and an attempt that finds it full gets a 503 with `Retry-After` rather than a
//! queue that grows with the attacker's concurrency (64 concurrent sign-ins took the server
//! from 260 MiB to 1.3 GiB before).
//!
//! The limiters live in this process's memory: with several replicas behind a load
//! balancer each replica counts on its own (the README says what that means).

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The long quota holds this many times the short one's burst, and refills this many times
/// slower per attempt, so sustained guessing gets `LONG_FACTOR` times slower.
const LONG_FACTOR: u32 = 10;
/// A lockout of one account is audited at most once in this long.
const LOCKOUT_AUDIT_EVERY: Duration = Duration::from_secs(15 * 60);
/// Limiter keys not used within their quota's period are forgotten when there are more
/// than this many, so a flood of made-up names cannot grow memory without bound.
const PRUNE_ABOVE_KEYS: usize = 10_000;
/// How often idle limiter keys are forgotten (when there are many).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Account names are limited by this prefix of what was typed (longer names are refused
/// at sign-in anyway).
const ACCOUNT_KEY_CHARS: usize = 64;

/// The sign-in limits in force; settings of `graftbench serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInLimits {
    /// N: attempts per account in a burst, then one per 60/N seconds; after 10*N attempts
    /// in a row, one per 10*60/N seconds (5: one every 12 s, then one every 2 minutes).
    pub per_account_per_minute: u32,
    /// Attempts per client address per minute, likewise.
    pub per_address_per_minute: u32,
    /// Password hashes computed at once; more concurrent sign-ins get a 503.
    pub hashing_concurrency: usize,
    /// Proxies whose `X-Forwarded-For` is believed for the client's address.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SignInLimits {
            per_account_per_minute: 5,
            per_address_per_minute: 30,
            hashing_concurrency: 2 * cores,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why an attempt may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts for this account (`locked` once per lockout: audit it) or from
    /// this address; try again after the wait.
    Throttled {
        /// How long until the next attempt is allowed.
        retry_after: Duration,
        /// The account's quota ran out and this is the first refusal in a while.
        new_account_lockout: bool,
        /// The address's quota ran out (rather than the account's).
        by_address: bool,
    },
    /// Every hashing slot is taken.
    Busy,
}

/// A short and a long quota over the same keys.
struct TwoQuotas<K: std::hash::Hash + Eq + Clone> {
    short: DefaultKeyedRateLimiter<K>,
    long: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> TwoQuotas<K> {
    fn per_minute(n: u32) -> TwoQuotas<K> {
        let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        let long_burst = n.saturating_mul(NonZeroU32::new(LONG_FACTOR).unwrap_or(NonZeroU32::MIN));
        // Refill of the long quota: one attempt per LONG_FACTOR short periods.
        let long_period = Duration::from_secs(60) * LONG_FACTOR / n.get();
        let long = Quota::with_period(long_period)
            .unwrap_or(Quota::per_hour(n))
            .allow_burst(long_burst);
        TwoQuotas {
            short: RateLimiter::keyed(Quota::per_minute(n)),
            long: RateLimiter::keyed(long),
        }
    }

    /// Takes one attempt from both quotas, or says how long to wait.
    fn check(&self, key: &K) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        // The short quota first: an attempt it refuses must not use up the long one, or a
        // flood of refused attempts would put the account's owner on the long wait too.
        self.short
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))?;
        self.long
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    fn prune(&self) {
        for limiter in [&self.short, &self.long] {
            if limiter.len() > PRUNE_ABOVE_KEYS {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

/// The limiters of one server process.
pub struct SignInGuard {
    limits: SignInLimits,
    accounts: TwoQuotas<String>,
    addresses: TwoQuotas<IpAddr>,
    hashing: Arc<Semaphore>,
    lockouts_audited: Mutex<HashMap<String, Instant>>,
    last_prune: Mutex<Instant>,
}

impl SignInGuard {
    /// Limiters for `limits`.
    pub fn new(limits: SignInLimits) -> SignInGuard {
        SignInGuard {
            accounts: TwoQuotas::per_minute(limits.per_account_per_minute),
            addresses: TwoQuotas::per_minute(limits.per_address_per_minute),
            hashing: Arc::new(Semaphore::new(limits.hashing_concurrency.max(1))),
            lockouts_audited: Mutex::new(HashMap::new()),
            last_prune: Mutex::new(Instant::now()),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SignInLimits {
        &self.limits
    }

    /// Admits one attempt for `account` from `address`: a hashing slot to hold until the
    /// password has been checked, or why not.
    pub fn admit(&self, account: &str, address: IpAddr) -> Result<OwnedSemaphorePermit, Refusal> {
        self.prune_now_and_then();
        // A slot first: an attempt turned away as busy must not use up the quotas.
        let slot = Arc::clone(&self.hashing)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        let address = address_key(address);
        if let Err(retry_after) = self.addresses.check(&address) {
            return Err(Refusal::Throttled {
                retry_after,
                new_account_lockout: false,
                by_address: true,
            });
        }
        let key = account_key(account);
        if let Err(retry_after) = self.accounts.check(&key) {
            return Err(Refusal::Throttled {
                retry_after,
                new_account_lockout: self.first_lockout_in_a_while(key),
                by_address: false,
            });
        }
        Ok(slot)
    }

    /// Forgets keys idle for their quota's period, at most once a minute: pruning scans
    /// the whole map, which must not happen on every attempt.
    fn prune_now_and_then(&self) {
        let Ok(mut last) = self.last_prune.lock() else {
            return;
        };
        if last.elapsed() >= PRUNE_EVERY {
            *last = Instant::now();
            drop(last);
            self.accounts.prune();
            self.addresses.prune();
        }
    }

    fn first_lockout_in_a_while(&self, key: String) -> bool {
        let Ok(mut audited) = self.lockouts_audited.lock() else {
            return true;
        };
        let now = Instant::now();
        if audited.len() > PRUNE_ABOVE_KEYS {
            audited.retain(|_, at| now.duration_since(*at) < LOCKOUT_AUDIT_EVERY);
        }
        match audited.get(&key) {
            Some(at) if now.duration_since(*at) < LOCKOUT_AUDIT_EVERY => false,
            _ => {
                audited.insert(key, now);
                true
            }
        }
    }
}

/// The address a quota is kept for: IPv4 as is, IPv6 by its /64 network, which is what
/// one client is given (counting each of its 2^64 addresses apart would limit nothing).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
    }
}

/// Account names are compared as typed, trimmed and without case, so `Alice` and `alice `
/// share one quota.
fn account_key(account: &str) -> String {
    account
        .trim()
        .chars()
        .take(ACCOUNT_KEY_CHARS)
        .flat_map(char::to_lowercase)
        .collect()
}

/// The client's address: the peer's, or when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
///
/// Proxies append the address they saw, so the right end of the header is the part the
/// trusted proxies wrote; anything to the left of that came from the client and may be
/// forged. An empty or unparsable header leaves the proxy's own address.
pub fn client_address(peer: SocketAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.ip();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = forwarded_for
        .iter()
        .rev()
        .flat_map(|header| header.rsplit(','))
        .map(str::trim);
    for hop in hops {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_account: u32, per_address: u32, hashing: usize) -> SignInGuard {
        SignInGuard::new(SignInLimits {
            per_account_per_minute: per_account,
            per_address_per_minute: per_address,
            hashing_concurrency: hashing,
            trusted_proxies: Vec::new(),
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_gets_its_burst_then_waits_and_the_first_refusal_is_a_lockout() {
        let guard = guard(3, 1000, 100);
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(guard.admit("alice", A).expect("within the burst"));
        }
        // Another address and another spelling of the same name: still the same account.
        let Err(Refusal::Throttled {
            retry_after,
            new_account_lockout,
            by_address,
        }) = guard.admit(" ALICE", B)
        else {
            panic!("the fourth attempt must wait");
        };
        assert!(new_account_lockout);
        assert!(!by_address);
        assert!(retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(20));
        // Only the first refusal of a lockout is news.
        assert!(matches!(
            guard.admit("alice", A),
            Err(Refusal::Throttled {
                new_account_lockout: false,
                ..
            })
        ));
        // Other accounts are not affected.
        assert!(guard.admit("bob", A).is_ok());
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let guard = guard(1000, 2, 100);
        let _a = guard.admit("a", A).expect("first");
        let _b = guard.admit("b", A).expect("second");
        assert!(matches!(
            guard.admit("c", A),
            Err(Refusal::Throttled {
                by_address: true,
                ..
            })
        ));
        assert!(guard.admit("c", B).is_ok());
    }

    #[test]
    fn hashing_slots_are_bounded_and_returned() {
        let guard = guard(1000, 1000, 2);
        let first = guard.admit("a", A).expect("slot 1");
        let _second = guard.admit("b", A).expect("slot 2");
        assert_eq!(guard.admit("c", A).unwrap_err(), Refusal::Busy);
        drop(first);
        assert!(guard.admit("c", A).is_ok());
    }

    #[test]
    fn the_long_quota_makes_waits_grow() {
        // Burst 2 per minute: the long quota holds 20, refilled one per 5 minutes.
        let long = TwoQuotas::<u8>::per_minute(2);
        let waits: Vec<Option<Duration>> = (0..3).map(|_| long.check(&0).err()).collect();
        assert_eq!(waits[..2], [None, None]);
        let short_wait = waits[2].expect("third attempt waits");
        assert!(short_wait <= Duration::from_secs(30), "{short_wait:?}");
        // Exhaust the long quota directly: its wait is the long refill period.
        for _ in 0..20 {
            let _ = long.long.check_key(&1);
        }
        let long_wait = long.check(&1).expect_err("long quota spent");
        assert!(long_wait > Duration::from_secs(240), "{long_wait:?}");
    }

    /// The bench found a flood of refused attempts spending the long quota in
    /// milliseconds, putting the account's owner on the slowest pace.
    #[test]
    fn refused_attempts_do_not_use_up_the_long_quota() {
        let quotas = TwoQuotas::<u8>::per_minute(2);
        assert!(quotas.check(&0).is_ok() && quotas.check(&0).is_ok());
        for _ in 0..1000 {
            assert!(quotas.check(&0).is_err());
        }
        // Of the long quota's 20, the two admitted attempts took two.
        for n in 0..18 {
            assert!(quotas.long.check_key(&0).is_ok(), "long cell {n}");
        }
        assert!(quotas.long.check_key(&0).is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_network() {
        let guard = guard(1000, 2, 100);
        let _a = guard
            .admit("a", "2001:db8::1".parse().unwrap())
            .expect("first");
        let _b = guard
            .admit("b", "2001:db8::ffff:2".parse().unwrap())
            .expect("second");
        assert!(matches!(
            guard.admit("c", "2001:db8::abcd:3".parse().unwrap()),
            Err(Refusal::Throttled {
                by_address: true,
                ..
            })
        ));
        assert!(guard.admit("c", "2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let peer = SocketAddr::new(proxy, 5000);
        let stranger = SocketAddr::new(A, 5000);
        let trusted = [proxy];
        // Not a trusted peer: its header is ignored.
        assert_eq!(client_address(stranger, &["198.51.100.7"], &trusted), A);
        // A trusted proxy: the rightmost address it did not add itself.
        assert_eq!(
            client_address(peer, &["203.0.113.9, 198.51.100.7"], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(peer, &["198.51.100.7", "127.0.0.1"], &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // No header, or garbage: the proxy's own address (all such clients share a quota).
        assert_eq!(client_address(peer, &[], &trusted), proxy);
        assert_eq!(client_address(peer, &["not an address"], &trusted), proxy);
        // Nothing trusted: the peer, whatever the header says.
        assert_eq!(client_address(peer, &["198.51.100.7"], &[]), proxy);
    }
}
