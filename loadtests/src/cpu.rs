//! CPU time of another process, from `/proc/<pid>/stat` (utime + stime), to report the
//! server's CPU cost per request independent of the load generator's own.

pub fn process_cpu_secs(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12th and 13th after ')'.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or("unexpected /proc stat format");
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_sec())
}

fn clock_ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}
