//! One integration test binary; each module covers one area.

mod common;
mod core_actions;
mod core_bot;
mod core_catalog;
mod core_shell;
mod core_strict;
mod dialogs;
mod events;
mod nlu;
mod nlu_embed;
