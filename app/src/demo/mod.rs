//! `livemirror demo`: the whole flow on a generated source image with a
//! synthetic write load, so a first-time user sees it work in seconds.
//!
//! [`scenario`] builds the images and the writer; [`terminal`] shows it
//! as text (the fallback when there is no display).

mod scenario;
mod terminal;

use std::process::ExitCode;

use clap::Args;
use livemirror_core::job::parse_size;

pub use scenario::Scenario;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Size of the generated source image.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    pub size: u64,
    /// Copy speed limit, so there is time to watch (0 = unlimited).
    #[arg(long, default_value = "96M", value_parser = parse_size)]
    pub speed: u64,
    /// Seconds to stay in sync after Ready before completing.
    #[arg(long, default_value_t = 2)]
    pub linger: u64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs { size: 512 << 20, speed: 96 << 20, linger: 2 }
    }
}

pub async fn run(args: DemoArgs) -> ExitCode {
    terminal::run(args).await
}
