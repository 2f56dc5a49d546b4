//! The progress bar of `pool check`: one bar per phase of the check (the walk of the trees, then
//! the comparison with the space map), drawn on stderr, and only when a person watches — never
//! when stdout or stderr is not a terminal, nor with `--json`.

use std::io::IsTerminal;

use cairn_engine::{CheckPhase, CheckProgress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar on stderr when one should be shown, else None.
pub fn check_bar(json: bool) -> Option<ProgressBar> {
    if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    // Hidden until the first phase starts, so the first frame drawn is complete.
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{msg:<22} [{bar:40}] {pos}/{len}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Some(bar)
}

/// The callback that moves `bar` along with the check's progress.
pub fn feed(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Box::new(move |p: CheckProgress| {
        if p.done == 0 {
            bar.set_message(phase_message(p.phase));
            bar.set_length(p.total);
            bar.reset();
            if bar.is_hidden() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        bar.set_position(p.done);
    })
}

fn phase_message(phase: CheckPhase) -> &'static str {
    match phase {
        CheckPhase::Walk => "metadata blocks walked",
        CheckPhase::Compare => "space map pages",
        _ => "checking",
    }
}
