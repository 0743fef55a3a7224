//! One pass of the control module against the kernel: observe, plan, apply. `netnode net` and
//! the daemon's control service both go through here.

#![allow(clippy::disallowed_methods)] // IO shell: times its steps

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::kernel::{Kernel, KernelError};
use super::plan::{plan, teardown, Op, Plan};
use super::state::Desired;

/// What to do with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print it, change nothing.
    Plan,
    /// Carry it out.
    Apply,
    /// Remove everything netnode made, and nothing else.
    Teardown,
}

/// The result of one pass.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The plan.
    pub plan: Plan,
    /// The ops that failed (index into the plan) and why.
    pub failed: Vec<(usize, KernelError)>,
    /// How long reading the kernel, planning and applying took.
    pub timing: [Duration; 3],
}

impl Outcome {
    /// Every op in order, warnings and failures, as `netnode net` prints them.
    pub fn describe(&self, mode: Mode) -> String {
        let mut s = String::new();
        for w in &self.plan.warnings {
            let _ = writeln!(s, "# warning: {w}");
        }
        if self.plan.ops.is_empty() {
            s.push_str(match mode {
                Mode::Teardown => "# nothing to do: nothing of netnode's is left\n",
                _ => "# nothing to do: the kernel matches the config\n",
            });
            return s;
        }
        let verb = match mode {
            Mode::Plan => "would run",
            _ => "ran",
        };
        let _ = writeln!(s, "# {verb} {} operations:", self.plan.ops.len());
        for (i, op) in self.plan.ops.iter().enumerate() {
            let _ = writeln!(s, "{op}");
            if let Some((_, e)) = self.failed.iter().find(|(j, _)| *j == i) {
                let _ = writeln!(s, "# FAILED: {e}");
            }
        }
        s
    }
}

/// Observes the kernel, plans toward `desired` (or its teardown), and applies unless `mode`
/// is [`Mode::Plan`].
pub async fn pass(kernel: &Kernel, desired: &Desired, mode: Mode) -> Result<Outcome, KernelError> {
    let start = Instant::now();
    let observed = kernel.observe().await?;
    let observed_at = Instant::now();
    let plan = match mode {
        Mode::Teardown => teardown(desired, &observed),
        _ => plan(desired, &observed),
    };
    let planned_at = Instant::now();
    let failed = match mode {
        Mode::Plan => Vec::new(),
        _ => kernel.apply(&plan.ops).await,
    };
    let timing = [
        observed_at - start,
        planned_at - observed_at,
        planned_at.elapsed(),
    ];
    Ok(Outcome {
        plan,
        failed,
        timing,
    })
}

impl Outcome {
    /// `observe 3.1 ms, plan 0.4 ms, apply 45.2 ms`.
    pub fn timing_line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "observe {:.1} ms, plan {:.1} ms, apply {:.1} ms",
            ms(self.timing[0]),
            ms(self.timing[1]),
            ms(self.timing[2])
        )
    }
}

/// How many ops of a plan touched each kind of thing, for a log line.
pub fn summary(ops: &[Op]) -> String {
    let (mut links, mut addrs, mut nft, mut other) = (0, 0, 0, 0);
    for op in ops {
        match op {
            Op::AddBridge { .. }
            | Op::AddVlan { .. }
            | Op::SetBridge { .. }
            | Op::SetLink { .. }
            | Op::DeleteLink { .. } => links += 1,
            Op::AddAddress { .. } | Op::DeleteAddress { .. } => addrs += 1,
            Op::Nft { .. } | Op::Table { .. } => nft += 1,
            _ => other += 1,
        }
    }
    format!("{links} link, {addrs} address, {nft} nftables, {other} other")
}
