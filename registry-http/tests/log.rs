//! Every request leaves one debug line with its method, raw path, status and duration.

use std::io;
use std::sync::{Arc, Mutex};

use kelp_registry::Response;
use kelp_registry_http::{Handler, Limits, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn requests_are_logged_at_debug() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime has one thread, so the server's tasks log to this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Handler::from_fn(|_req| async { Response::error(404, 40401, "Subject 'a/b' not found.") });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, handler, Limits::default(), async move {
        let _ = stopped.await;
    }));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = b"DELETE /subjects/a%2Fb?permanent=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 404"));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line =
        log.lines().find(|l| l.contains("registry request")).unwrap_or_else(|| panic!("no request line in {log}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("method=DELETE"), "{line}");
    assert!(line.contains(r#"path="/subjects/a%2Fb""#), "{line}");
    assert!(!line.contains("permanent"), "the query stays out of the log: {line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(line.contains("micros="), "{line}");
}
