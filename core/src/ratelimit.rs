//! The speed limit: a virtual clock of when the link is free again.
//!
//! Each copy reserves `bytes / speed` seconds starting when the previous
//! reservation ends (or now, if the link has been idle — idle time earns no
//! credit, so there are no bursts after a pause). It uses tokio's `Instant`,
//! so tests run it on a paused clock.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second; 0 means unlimited.
    speed: u64,
    free_at: Option<Instant>,
}

impl RateLimiter {
    pub fn new(speed: u64) -> Self {
        RateLimiter { speed, free_at: None }
    }

    pub fn speed(&self) -> u64 {
        self.speed
    }

    /// Takes effect for the next reservation; what was reserved is forgotten.
    pub fn set_speed(&mut self, speed: u64) {
        self.speed = speed;
        self.free_at = None;
    }

    /// When the next copy may start, without reserving anything.
    pub fn ready_at(&self, now: Instant) -> Instant {
        match self.free_at {
            Some(t) if self.speed != 0 && t > now => t,
            _ => now,
        }
    }

    /// Reserves `bytes` starting at [`ready_at`](Self::ready_at).
    pub fn reserve(&mut self, now: Instant, bytes: u64) {
        if self.speed == 0 {
            return;
        }
        let start = self.ready_at(now);
        self.free_at = Some(start + Duration::from_secs_f64(bytes as f64 / self.speed as f64));
    }
}

impl RateLimiter {
    /// Gives back part of a reservation that turned out not to need the
    /// link (zeroes found where data was expected). Never earns credit
    /// beyond "free now".
    pub fn refund(&mut self, now: Instant, bytes: u64) {
        if let (Some(t), true) = (self.free_at, self.speed != 0) {
            let back = Duration::from_secs_f64(bytes as f64 / self.speed as f64);
            self.free_at = Some(t.checked_sub(back).unwrap_or(now).max(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_up_at_the_set_speed() {
        let now = Instant::now();
        let mut r = RateLimiter::new(1 << 20);
        assert_eq!(r.ready_at(now), now);
        r.reserve(now, 1 << 20);
        r.reserve(now, 1 << 19);
        assert_eq!(r.ready_at(now), now + Duration::from_millis(1500));
        r.set_speed(0);
        r.reserve(now, 1 << 30);
        assert_eq!(r.ready_at(now), now);
    }

    #[test]
    fn idle_time_earns_no_burst() {
        let now = Instant::now();
        let mut r = RateLimiter::new(1000);
        r.reserve(now, 1000);
        let later = now + Duration::from_secs(10);
        r.reserve(later, 1000);
        assert_eq!(r.ready_at(later), later + Duration::from_secs(1));
    }
}
