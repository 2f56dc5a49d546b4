//! Jobs over SMI-S: list, show and cancel (CIM_ConcreteJob, RequestStateChange), and waiting for
//! a copy job with a progress bar fed by its PercentComplete.
//!
//! Invariant: a wait ends only when the job has left the running states (2, 3, 4) — it polls the
//! job instance itself, never guesses from time.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use cairn_cim::{Instance, InstancePath, Value};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::array::job;
use super::session::Session;
use crate::output::JobRow;

/// How often a wait reads the job again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// JobState 7: Completed.
const JOB_COMPLETED: u16 = 7;
/// RequestStateChange RequestedState 4: Terminate.
const REQUEST_TERMINATE: u16 = 4;

/// Every job the daemon keeps, with its path and target (from CIM_AffectedJobElement).
pub fn list(s: &Session) -> Result<Vec<(JobRow, InstancePath)>> {
    let affected = s.enumerate("CIM_AffectedJobElement")?;
    s.enumerate("CIM_ConcreteJob")?
        .into_iter()
        .map(|i| {
            let path = i
                .path
                .clone()
                .ok_or_else(|| anyhow!("A job without a path"))?;
            let mut row = job(&i);
            row.target = target_of(&affected, &path);
            Ok((row, path))
        })
        .collect()
}

/// The job whose id is `id`.
pub fn find(s: &Session, id: &str) -> Result<(JobRow, InstancePath)> {
    list(s)?
        .into_iter()
        .find(|(j, _)| j.id == id)
        .ok_or_else(|| anyhow!("No job {id} on the daemon (`cairn job list` shows them)"))
}

/// DeviceID of the volume `job` affects, from the CIM_AffectedJobElement instances.
fn target_of(affected: &[Instance], job: &InstancePath) -> Option<String> {
    affected.iter().find_map(|a| {
        let affecting = a.get("AffectingElement").and_then(Value::as_reference)?;
        if !affecting.same_keys(job) {
            return None;
        }
        let vol = a.get("AffectedElement").and_then(Value::as_reference)?;
        match vol.key("DeviceID")? {
            cairn_cim::KeyValue::String(id) => Some(id.clone()),
            _ => None,
        }
    })
}

/// Asks the daemon to terminate the job at `path`.
pub fn cancel(s: &Session, path: &InstancePath) -> Result<()> {
    s.invoke(
        path,
        "RequestStateChange",
        vec![("RequestedState".into(), Value::Uint16(REQUEST_TERMINATE))],
        &[0, 4096],
    )?;
    Ok(())
}

/// How a wait shows progress: a bar on a terminal, a line per change otherwise, or nothing.
enum Progress {
    Bar(ProgressBar),
    Lines(Option<u16>),
    Quiet,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Progress::Lines(None);
        }
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos:>3}%")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Progress::Bar(bar)
    }

    fn show(&mut self, j: &JobRow) {
        match self {
            Progress::Bar(bar) => {
                bar.set_message(format!("job {}", j.id));
                bar.set_position(u64::from(j.percent_complete));
            }
            Progress::Lines(last) if *last != Some(j.percent_complete) => {
                eprintln!("job {}: {}%", j.id, j.percent_complete);
                *last = Some(j.percent_complete);
            }
            Progress::Lines(_) | Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Waits for the job at `path` to finish, showing its progress on stderr unless `quiet`; an
/// unsuccessful end is an error carrying the job's ErrorDescription.
pub fn wait(s: &Session, path: &InstancePath, quiet: bool) -> Result<JobRow> {
    let mut progress = Progress::new(quiet);
    loop {
        let j = job(&s.get(path)?);
        progress.show(&j);
        if !matches!(j.state_code, 2..=4) {
            progress.finish();
            if j.state_code != JOB_COMPLETED {
                bail!(
                    "Job {} ended {} ({}){}",
                    j.id,
                    j.state,
                    j.state_code,
                    j.error.map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
            return Ok(j);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
