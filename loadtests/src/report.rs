//! Latency and throughput summaries.

use std::time::Duration;

#[derive(Debug, Default)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub rows: u64,
    pub bytes: u64,
}

impl Sample {
    pub fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.rows += other.rows;
        self.bytes += other.bytes;
    }
}

/// Prints one summary line set; `cpu_secs` is the target process's CPU time over the run.
pub fn print(label: &str, mut sample: Sample, elapsed: Duration, cpu_secs: Option<f64>) {
    sample.latencies.sort_unstable();
    let n = sample.latencies.len();
    let pct = |p: f64| -> f64 {
        let idx = ((n as f64 * p).ceil() as usize).clamp(1, n.max(1)) - 1;
        sample.latencies.get(idx).map_or(0.0, |latency| latency.as_secs_f64() * 1e6)
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!("{label}");
    println!("  requests      {n} ok, {} errors in {:.2} s", sample.errors, secs);
    println!("  throughput    {:.0} req/s", n as f64 / secs);
    println!("  latency (µs)  p50 {:.0}  p90 {:.0}  p99 {:.0}  max {:.0}", pct(0.50), pct(0.90), pct(0.99), pct(1.0));
    if sample.rows > 0 {
        println!(
            "  data          {} rows, {:.1} MB; {:.2} M rows/s, {:.1} MB/s",
            sample.rows,
            sample.bytes as f64 / 1e6,
            sample.rows as f64 / secs / 1e6,
            sample.bytes as f64 / secs / 1e6
        );
    }
    if let Some(cpu) = cpu_secs {
        println!("  server CPU    {:.1} µs/request ({:.2} s total)", cpu * 1e6 / n.max(1) as f64, cpu);
    }
}
