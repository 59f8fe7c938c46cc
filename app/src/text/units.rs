//! Numbers as people read them: sizes in binary units, rates, durations.
//! Shared by the terminal output and the window so both say the same thing.

use std::time::Duration;

use livemirror_core::job::{JobState, JobStatus};
pub use livemirror_core::units::human;

const MIB: u64 = 1 << 20;

/// A duration as `42 s`, `3 min 05 s` or `2 h 07 min`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// A rate in the unit its size takes: `12.0 MiB/s`.
pub fn rate(bytes_per_sec: u64) -> String {
    format!("{}/s", human(bytes_per_sec))
}

/// The rate of `bytes` moved in `took` (a job's average); a time too
/// short to measure counts as a millisecond, not as a division by zero.
pub fn average_rate(bytes: u64, took: Duration) -> String {
    rate((bytes as f64 / took.as_secs_f64().max(1e-3)) as u64)
}

/// How long the work on `bytes` took, and its average rate, as a job's
/// last line on the terminal says it: "in 12.3s, 45.6 MiB/s".
pub fn took(bytes: u64, took: Duration) -> String {
    format!("in {:.1}s, {}", took.as_secs_f64(), average_rate(bytes, took))
}

/// A speed limit in the unit it is typed in: "unlimited", "96 MiB/s",
/// "1.5 MiB/s". No limit is said "unlimited", never "0 MiB/s", and a limit
/// is not rounded to `human`'s one decimal, so what was typed is what is
/// shown.
pub fn speed_limit(speed: u64) -> String {
    if speed == 0 {
        return "unlimited".into();
    }
    let mib = format!("{:.2}", speed as f64 / MIB as f64);
    format!("{} MiB/s", mib.trim_end_matches('0').trim_end_matches('.'))
}

/// When a job will be in sync, as its progress estimates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eta {
    /// Too early to tell.
    Unknown,
    /// The work left shrinks: about this long at the recent pace.
    In(Duration),
    /// The work left does not shrink: the source is written at least as
    /// fast as it is copied.
    NotConverging,
}

/// When the job with `status` will be in sync: "in sync" once it is, else
/// "ETA …", and "—" with the reason when there is none to give (the speed
/// limit is named when it is what holds the copy back).
pub fn eta(eta: Eta, status: &JobStatus) -> String {
    if status.ready {
        return "in sync".into();
    }
    if matches!(status.state, JobState::Paused | JobState::Standby) {
        return "ETA —: paused".into();
    }
    match eta {
        Eta::Unknown => "ETA —".into(),
        Eta::In(d) => format!("ETA {}", duration(d)),
        Eta::NotConverging if status.speed != 0 => format!(
            "ETA —: the source is written faster than the speed limit ({}) lets it be copied",
            speed_limit(status.speed)
        ),
        Eta::NotConverging => "ETA —: the source is written faster than it can be copied".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(duration(Duration::from_secs(7620)), "2 h 07 min");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(0), "0 B/s");
        assert_eq!(rate(12 * MIB + MIB / 2), "12.5 MiB/s");
        assert_eq!(average_rate(64 * MIB, Duration::from_secs(2)), "32.0 MiB/s");
        assert_eq!(average_rate(MIB, Duration::ZERO), "1000.0 MiB/s", "counted as 1 ms");
        assert_eq!(took(96 * MIB, Duration::from_millis(1500)), "in 1.5s, 64.0 MiB/s");
    }

    #[test]
    fn speed_limits() {
        assert_eq!(speed_limit(0), "unlimited");
        assert_eq!(speed_limit(96 * MIB), "96 MiB/s");
        assert_eq!(speed_limit(3 * MIB / 2), "1.5 MiB/s");
        assert_eq!(speed_limit(MIB + MIB / 4), "1.25 MiB/s");
    }

    /// A job's status in `state`, with `speed` as its limit.
    fn status(state: JobState, speed: u64) -> JobStatus {
        JobStatus { state, speed, ready: state.is_ready(), ..JobStatus::default() }
    }

    #[test]
    fn etas() {
        let copying = status(JobState::Running, 0);
        assert_eq!(eta(Eta::Unknown, &copying), "ETA —");
        assert_eq!(eta(Eta::In(Duration::from_secs(185)), &copying), "ETA 3 min 05 s");
        assert_eq!(
            eta(Eta::NotConverging, &copying),
            "ETA —: the source is written faster than it can be copied"
        );
        let limited = status(JobState::Running, MIB);
        assert_eq!(
            eta(Eta::NotConverging, &limited),
            "ETA —: the source is written faster than the speed limit (1 MiB/s) lets it be copied"
        );
        let paused = status(JobState::Paused, 0);
        assert_eq!(eta(Eta::In(Duration::from_secs(5)), &paused), "ETA —: paused");
        assert_eq!(eta(Eta::NotConverging, &status(JobState::Ready, 0)), "in sync");
    }
}
