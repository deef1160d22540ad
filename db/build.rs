//! Rebuilds the crate when a migration file changes: `include_dir!` embeds
//! `migrations/` but does not tell cargo to watch it on stable Rust.
#[expect(
    clippy::disallowed_macros,
    reason = "cargo reads build-script instructions from stdout"
)]
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
