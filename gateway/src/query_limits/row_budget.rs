//! The rows-per-window budget (an exfiltration budget): each principal may receive `rows`
//! per `window_secs`, refilled continuously. A result is charged as its rows pass, so a
//! large one may overdraw; the next query of a principal whose budget is spent is refused
//! until it refills above zero.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::RowsPerWindow;

/// Budgets by principal.
#[derive(Debug, Default)]
pub(crate) struct RowBudget {
    principals: Mutex<HashMap<String, Balance>>,
}

#[derive(Debug, Clone, Copy)]
struct Balance {
    /// Rows left (negative: overdrawn).
    rows: f64,
    at: Instant,
    budget: RowsPerWindow,
}

impl Balance {
    fn full(budget: RowsPerWindow, now: Instant) -> Self {
        Self { rows: budget.rows as f64, at: now, budget }
    }

    /// Rows refilled per second.
    fn rate(&self) -> f64 {
        self.budget.rows as f64 / self.budget.window_secs as f64
    }

    /// Refilled up to `now`, never past the budget.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.rows = (self.rows + elapsed * self.rate()).min(self.budget.rows as f64);
        self.at = now;
    }
}

impl RowBudget {
    /// Whether `principal` may start a query: `Err` with the wait until its budget is above
    /// zero again.
    pub(crate) fn check(&self, principal: &str, budget: RowsPerWindow) -> Result<(), Duration> {
        self.check_at(principal, budget, Instant::now())
    }

    fn check_at(&self, principal: &str, budget: RowsPerWindow, now: Instant) -> Result<(), Duration> {
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(balance) = principals.get_mut(principal) else { return Ok(()) };
        if balance.budget != budget {
            // A reload changed the tier: the new budget, with what was spent carried.
            let spent = balance.budget.rows as f64 - balance.rows;
            *balance = Balance { rows: budget.rows as f64 - spent, at: balance.at, budget };
        }
        balance.refill(now);
        if balance.rows > 0.0 {
            return Ok(());
        }
        // Whole seconds, at least one: until the balance is above zero.
        let secs = (-balance.rows / balance.rate()).floor() + 1.0;
        Err(Duration::from_secs_f64(secs.min(budget.window_secs as f64)))
    }

    /// Charges `rows` a result of `principal` sent.
    pub(crate) fn charge(&self, principal: &str, budget: RowsPerWindow, rows: u64) {
        self.charge_at(principal, budget, rows, Instant::now());
    }

    fn charge_at(&self, principal: &str, budget: RowsPerWindow, rows: u64, now: Instant) {
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        let balance = principals.entry(principal.to_string()).or_insert_with(|| Balance::full(budget, now));
        balance.refill(now);
        balance.rows -= rows as f64;
    }

    /// Forgets principals whose budget is full again.
    pub(crate) fn prune(&self) {
        let now = Instant::now();
        let mut principals = self.principals.lock().unwrap_or_else(PoisonError::into_inner);
        principals.retain(|_, balance| {
            balance.refill(now);
            balance.rows < balance.budget.rows as f64
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: RowsPerWindow = RowsPerWindow { rows: 100, window_secs: 10 };

    #[test]
    fn spent_then_refused_with_the_wait_then_refilled() {
        let budget = RowBudget::default();
        let start = Instant::now();
        budget.check_at("ann", BUDGET, start).unwrap();
        budget.charge_at("ann", BUDGET, 80, start);
        budget.check_at("ann", BUDGET, start).unwrap();
        // The second result overdraws: 100 - 80 - 50 = -30 rows, refilled at 10 a second.
        budget.charge_at("ann", BUDGET, 50, start);
        assert_eq!(budget.check_at("ann", BUDGET, start), Err(Duration::from_secs(4)));
        budget.check_at("bob", BUDGET, start).unwrap();
        assert!(budget.check_at("ann", BUDGET, start + Duration::from_secs(2)).is_err());
        budget.check_at("ann", BUDGET, start + Duration::from_millis(3100)).unwrap();
    }

    #[test]
    fn full_budgets_are_forgotten() {
        let budget = RowBudget::default();
        budget.charge("ann", RowsPerWindow { rows: 1000, window_secs: 1 }, 1);
        std::thread::sleep(Duration::from_millis(20));
        budget.prune();
        assert!(budget.principals.lock().unwrap().is_empty());
    }
}
