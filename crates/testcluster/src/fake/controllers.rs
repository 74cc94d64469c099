//! The loop that runs every controller after each write (and every 100 ms for timers).

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::kubelet::{self, Action};
use super::store::State;
use super::{gc, jobs, scheduler, volumes, workloads};

/// One pass of every controller; returns the work to do outside the lock.
pub fn pass(st: &mut State) -> Vec<Action> {
    gc::namespaces(st);
    gc::pass(st);
    volumes::pass(st);
    jobs::pass(st);
    jobs::cronjobs(st);
    workloads::pass(st);
    scheduler::pass(st);
    kubelet::pass(st)
}

/// Runs the controllers until the cluster is dropped.
pub async fn run(sh: Arc<Shared>) {
    let notify = sh
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .notify
        .clone();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        // Passes repeat while they change something, so that chains (Job → pod → scheduled →
        // started) settle without waiting for the timer.
        for _ in 0..20 {
            let (changed, actions) = {
                let mut st = sh.state.lock().unwrap_or_else(|e| e.into_inner());
                let before = st.rv;
                let actions = pass(&mut st);
                (st.rv != before, actions)
            };
            for a in actions {
                match a {
                    Action::Start(l) => kubelet::spawn(sh.clone(), *l),
                    Action::Signal(pid, sig) => kubelet::signal(pid, sig),
                }
            }
            if !changed {
                break;
            }
        }
    }
}
