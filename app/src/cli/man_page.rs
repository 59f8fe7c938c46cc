//! Keeps the hand-written manual page (`assets/livemirror.1`, installed by
//! the .deb) honest: every subcommand and long option the parser accepts
//! must be documented there, and the version must match. A hand-written page
//! reads better than a generated one (sections on privileges, exit status and
//! examples); this test is what stops it from drifting.

use clap::CommandFactory;

use super::Cli;

const MAN: &str = include_str!("../../../assets/livemirror.1");

/// Long options as roff writes them (`\-\-buf\-size`).
fn roff_option(long: &str) -> String {
    format!("\\-\\-{}", long.replace('-', "\\-"))
}

#[test]
fn every_subcommand_and_option_is_in_the_man_page() {
    let cli = Cli::command();
    let mut missing = Vec::new();
    for sub in cli.get_subcommands() {
        if !MAN.contains(&format!(".SS \"livemirror {}", sub.get_name())) {
            missing.push(format!("subcommand {}", sub.get_name()));
        }
        for long in sub.get_arguments().filter_map(|a| a.get_long()) {
            if !["help", "version"].contains(&long) && !MAN.contains(&roff_option(long)) {
                missing.push(format!("{} --{long}", sub.get_name()));
            }
        }
    }
    for long in cli.get_arguments().filter_map(|a| a.get_long()) {
        if !MAN.contains(&roff_option(long)) {
            missing.push(format!("--{long}"));
        }
    }
    assert!(missing.is_empty(), "assets/livemirror.1 does not document: {missing:?}");
}

#[test]
fn man_page_version_is_the_crate_version() {
    let th = MAN.lines().find(|l| l.starts_with(".TH ")).unwrap_or_default();
    assert!(th.contains(&format!("\"livemirror {}\"", env!("CARGO_PKG_VERSION"))), "{th}");
}
