//! The one way livemirror builds a tokio runtime: the CLI, the window's
//! engine thread, the demo and the tests all run jobs and NBD servers on
//! one built here, so they all get the same drivers (I/O and timers, which
//! the job and the server both need) and named threads.

use std::io;

use tokio::runtime::{Builder, Runtime};

/// A multi-threaded runtime with I/O and timers, its worker threads named
/// `name`. `workers`: how many worker threads; `None` is one per core
/// (tokio's default). Device I/O runs on the blocking pool either way, so
/// a few workers are enough for a job and a server.
pub fn build(name: &str, workers: Option<usize>) -> io::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    builder.thread_name(name).enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_timers_on_named_workers() {
        let rt = super::build("lm-test", Some(2)).unwrap();
        let name = rt.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) }).await.unwrap()
        });
        assert_eq!(name.as_deref(), Some("lm-test"));
    }
}
