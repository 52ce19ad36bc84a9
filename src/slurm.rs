//! Slurm's view of a job step, read from the environment `srun` gives each
//! task: which job step, which of the step's nodes, the task's place on
//! that node, and how many of the step's tasks share it. One home for
//! Slurm's variables: [`MailboxGroup::from_env`](crate::mailbox::MailboxGroup::from_env)
//! forms a node's group from it, and the wait policy counts the node's
//! runnable waiters with it ([`crate::sync::wait::node_processes`]).
//!
//! ```
//! use shmpi::slurm::SlurmTask;
//!
//! // What `srun -N 2 -n 3` gives the second task of node 1 (tasks 2 + 1).
//! let vars = [
//!     ("SLURM_JOB_ID", "812"),
//!     ("SLURM_STEP_ID", "0"),
//!     ("SLURM_NODEID", "1"),
//!     ("SLURM_LOCALID", "0"),
//!     ("SLURM_STEP_TASKS_PER_NODE", "2,1"),
//! ];
//! let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
//! let task = SlurmTask::from_vars(get)?.expect("under srun");
//! assert_eq!((task.node, task.local, task.tasks_on_node), (1, 0, 1));
//! assert_eq!(task.group_name()?.file_name(), "shmpi.slurm.812.0.node1");
//! # Ok::<(), shmpi::MailboxError>(())
//! ```

use crate::error::MailboxError;
use crate::segment::SegmentName;

/// The job's id.
pub const JOB_ID: &str = "SLURM_JOB_ID";
/// The step's id within the job (`srun` sets it; a batch script has none).
pub const STEP_ID: &str = "SLURM_STEP_ID";
/// The index of this task's node among the step's nodes.
pub const NODE_ID: &str = "SLURM_NODEID";
/// This task's index among the step's tasks on its node.
pub const LOCAL_ID: &str = "SLURM_LOCALID";
/// The step's tasks per node, in Slurm's compressed form (`2(x3),1`).
pub const STEP_TASKS_PER_NODE: &str = "SLURM_STEP_TASKS_PER_NODE";
/// The job's tasks per node, the same form: read when the step's is absent.
pub const TASKS_PER_NODE: &str = "SLURM_TASKS_PER_NODE";

/// One task of a Slurm job step, as its environment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTask {
    /// `SLURM_JOB_ID`.
    pub job: String,
    /// `SLURM_STEP_ID`.
    pub step: String,
    /// `SLURM_NODEID`: this node's index in the step.
    pub node: usize,
    /// `SLURM_LOCALID`: this task's index on its node (0 creates the
    /// node's group).
    pub local: usize,
    /// The step's tasks on this node.
    pub tasks_on_node: usize,
}

impl SlurmTask {
    /// This process's task, `None` when it was not started by `srun` (no
    /// `SLURM_JOB_ID` or no `SLURM_STEP_ID`).
    ///
    /// # Errors
    ///
    /// [`MailboxError::Env`] naming a variable that is missing or
    /// malformed while the others say this is a Slurm step.
    pub fn from_env() -> Result<Option<SlurmTask>, MailboxError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables (tests
    /// give fake nodes).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SlurmTask>, MailboxError> {
        let (Some(job), Some(step)) = (get(JOB_ID), get(STEP_ID)) else {
            return Ok(None);
        };
        let word = |var: &'static str, value: String| {
            // Slurm's ids are short numbers (or names such as `batch`):
            // 1 to 64 of [A-Za-z0-9_-] keep the group's name valid.
            let ok = (1..=64).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(value)
            } else {
                Err(MailboxError::Env {
                    var,
                    problem: format!("{value:?} is not a Slurm id"),
                })
            }
        };
        let number = |var: &'static str| -> Result<usize, MailboxError> {
            let value = get(var).ok_or_else(|| MailboxError::Env {
                var,
                problem: "not set, though SLURM_JOB_ID and SLURM_STEP_ID are".into(),
            })?;
            value.trim().parse().map_err(|_| MailboxError::Env {
                var,
                problem: format!("{value:?} is not a non-negative integer"),
            })
        };
        let (job, step) = (word(JOB_ID, job)?, word(STEP_ID, step)?);
        let (node, local) = (number(NODE_ID)?, number(LOCAL_ID)?);
        let (var, spec) = match get(STEP_TASKS_PER_NODE) {
            Some(spec) => (STEP_TASKS_PER_NODE, spec),
            None => (
                TASKS_PER_NODE,
                get(TASKS_PER_NODE).ok_or_else(|| MailboxError::Env {
                    var: STEP_TASKS_PER_NODE,
                    problem: "neither it nor SLURM_TASKS_PER_NODE is set".into(),
                })?,
            ),
        };
        let per_node = tasks_per_node(&spec).ok_or_else(|| MailboxError::Env {
            var,
            problem: format!("{spec:?} is not a list like 2(x3),1"),
        })?;
        let tasks_on_node = *per_node.get(node).ok_or_else(|| MailboxError::Env {
            var: NODE_ID,
            problem: format!("node {node} of a step on {} nodes", per_node.len()),
        })?;
        if local >= tasks_on_node {
            return Err(MailboxError::Env {
                var: LOCAL_ID,
                problem: format!("task {local} of {tasks_on_node} on node {node}"),
            });
        }
        Ok(Some(SlurmTask {
            job,
            step,
            node,
            local,
            tasks_on_node,
        }))
    }

    /// The name of this node's group in this step:
    /// `shmpi.slurm.<job>.<step>.node<node>`.
    ///
    /// # Errors
    ///
    /// [`MailboxError::Env`] naming `SLURM_JOB_ID` when the name is not a
    /// valid segment name (not for a task made by [`from_env`](Self::from_env)
    /// or [`from_vars`](Self::from_vars), whose ids are checked).
    pub fn group_name(&self) -> Result<SegmentName, MailboxError> {
        let name = format!("shmpi.slurm.{}.{}.node{}", self.job, self.step, self.node);
        SegmentName::new(&name).map_err(|e| MailboxError::Env {
            var: JOB_ID,
            problem: format!("{name:?} is no segment name: {e}"),
        })
    }
}

/// Expands Slurm's compressed task counts: `2(x3),1` → `[2, 2, 2, 1]`.
/// `None` for anything else (and for a node count above 65,536).
///
/// ```
/// use shmpi::slurm::tasks_per_node;
///
/// assert_eq!(tasks_per_node("2(x3),1"), Some(vec![2, 2, 2, 1]));
/// assert_eq!(tasks_per_node("4"), Some(vec![4]));
/// assert_eq!(tasks_per_node("2(x"), None);
/// ```
pub fn tasks_per_node(spec: &str) -> Option<Vec<usize>> {
    const MAX_NODES: usize = 1 << 16;
    let mut out = Vec::new();
    for part in spec.trim().split(',') {
        let (count, times) = match part.split_once("(x") {
            Some((count, rest)) => (count, rest.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (part, 1),
        };
        let count = count.parse::<usize>().ok()?;
        if times == 0 || out.len() + times > MAX_NODES {
            return None;
        }
        out.extend(std::iter::repeat_n(count, times));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `srun -N 2 -n 5`: tasks 0–2 on node 0, 3–4 on node 1.
    fn fake(node: usize, local: usize) -> impl Fn(&str) -> Option<String> {
        move |name| {
            Some(match name {
                JOB_ID => "4711".into(),
                STEP_ID => "3".into(),
                NODE_ID => node.to_string(),
                LOCAL_ID => local.to_string(),
                STEP_TASKS_PER_NODE => "3,2".into(),
                TASKS_PER_NODE => "4(x2)".into(),
                _ => return None,
            })
        }
    }

    #[test]
    fn two_fake_nodes_form_one_group_each() {
        let mut names = Vec::new();
        for (node, tasks) in [(0, 3), (1, 2)] {
            for local in 0..tasks {
                let t = SlurmTask::from_vars(fake(node, local)).unwrap().unwrap();
                assert_eq!((t.node, t.local, t.tasks_on_node), (node, local, tasks));
                names.push(t.group_name().unwrap());
            }
        }
        // One name per node, shared by that node's tasks.
        assert!(names[..3].iter().all(|n| *n == names[0]));
        assert!(names[3..].iter().all(|n| *n == names[3]));
        assert_ne!(names[0], names[3]);
        assert_eq!(names[3].file_name(), "shmpi.slurm.4711.3.node1");
    }

    #[test]
    fn not_under_srun_and_malformed_steps() {
        assert_eq!(SlurmTask::from_vars(|_| None).unwrap(), None);
        // A batch script: a job, no step.
        let batch = |n: &str| (n == JOB_ID).then(|| "1".to_owned());
        assert_eq!(SlurmTask::from_vars(batch).unwrap(), None);
        let bad = |var: &'static str, value: &'static str| {
            let base = fake(1, 0);
            move |n: &str| {
                if n == var {
                    Some(value.to_owned())
                } else {
                    base(n)
                }
            }
        };
        for (var, value, named) in [
            (NODE_ID, "2", NODE_ID),
            (LOCAL_ID, "2", LOCAL_ID),
            (LOCAL_ID, "-1", LOCAL_ID),
            (STEP_TASKS_PER_NODE, "3,x", STEP_TASKS_PER_NODE),
            (JOB_ID, "../x", JOB_ID),
            (STEP_ID, "", STEP_ID),
        ] {
            match SlurmTask::from_vars(bad(var, value)) {
                Err(MailboxError::Env { var, .. }) => assert_eq!(var, named, "{value}"),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
        // The job's counts stand in for the step's.
        let job_only = |n: &str| {
            if n == STEP_TASKS_PER_NODE {
                None
            } else {
                fake(1, 3)(n)
            }
        };
        assert_eq!(
            SlurmTask::from_vars(job_only)
                .unwrap()
                .unwrap()
                .tasks_on_node,
            4
        );
    }

    #[test]
    fn compressed_counts() {
        assert_eq!(tasks_per_node("1(x2),3(x1),2"), Some(vec![1, 1, 3, 2]));
        for bad in ["", "x", "2(x0)", "2(x3", "2,,1", "(x2)", "2(x70000)"] {
            assert_eq!(tasks_per_node(bad), None, "{bad}");
        }
    }
}
