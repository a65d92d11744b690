//! `gateway health --url http://127.0.0.1:9090/readyz`: an exec probe for images without a
//! shell or curl (the release image is `FROM scratch`). Exit 0 on a 2xx answer, 1 otherwise,
//! with the reason on stderr. Plain HTTP to a loopback address only: the health listener and
//! the engine's `/health` are loopback services, and a probe must never reach off the pod.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// `http://<loopback address>:<port>/<path>` to GET.
    #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
    pub url: String,
    /// Give up after this many seconds (connect and answer together).
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

pub(crate) fn run(args: HealthArgs) -> Result<(), String> {
    let (addr, path) = parse_url(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("async runtime: {e}"))?;
    let status = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), get(addr, &path))
            .await
            .map_err(|_| format!("{}: no answer within {} s", args.url, args.timeout_secs))?
    })?;
    if status.is_success() {
        println!("{}: {}", args.url, status);
        Ok(())
    } else {
        Err(format!("{}: {}", args.url, status))
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<http::StatusCode, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = sender.send_request(request).await.map_err(|e| format!("{addr}: {e}"))?;
    Ok(response.status())
}

/// `http://127.0.0.1:9090/readyz` → (127.0.0.1:9090, "/readyz"). Names are refused: a
/// scratch image may have no resolver configuration, and `localhost` could resolve off-host.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs (the health listener is plain HTTP on loopback)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| format!("{url}: the host must be a loopback IP address with a port, e.g. 127.0.0.1:9090"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url}: {} is not a loopback address", addr.ip()));
    }
    Ok((addr, path))
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn loopback_urls_only() {
        let (addr, path) = parse_url("http://127.0.0.1:9090/readyz").unwrap();
        assert_eq!((addr.to_string(), path.as_str()), ("127.0.0.1:9090".to_string(), "/readyz"));
        let (addr, path) = parse_url("http://[::1]:8091").unwrap();
        assert_eq!((addr.to_string(), path.as_str()), ("[::1]:8091".to_string(), "/"));
        for bad in ["https://127.0.0.1:9090/", "http://10.0.0.1:9090/", "http://localhost:9090/", "http://127.0.0.1/"] {
            assert!(parse_url(bad).is_err(), "{bad} was accepted");
        }
    }
}
