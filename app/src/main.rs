//! livemirror: clone a disk or image while it is in use, keep the copy in
//! sync, and switch over to it on Complete.

mod cli;
mod control;
mod demo;
mod gui;
mod privileged;
mod resume;
mod share;
mod sizes;
mod text;
mod tracking;
mod units;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
