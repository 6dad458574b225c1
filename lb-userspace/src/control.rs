//! The control socket: a Unix socket beside the pidfile (mode 0600, root only) on which a
//! running xlb answers requests, one JSON object per line each way, one request per connection.
//!
//! Commands find their daemon here rather than by a pid: the kernel vouches for the process at
//! the other end (SO_PEERCRED), so no command ever signals a pid it read from a file.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::{
        fd::AsRawFd as _,
        unix::{fs::MetadataExt as _, fs::PermissionsExt as _, net::UnixStream},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{Semaphore, mpsc, oneshot},
};

/// A request line longer than this is refused: no command needs more.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// A client that sends nothing for this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients served at once; more wait for a place (the daemon never stops for clients).
const MAX_CLIENTS: usize = 16;
/// How long a client waits for the daemon's answer. A reload's parse has its own deadline,
/// shorter than this.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Re-read the config file; answer what changed or why it was refused.
    Reload,
    /// Everything the daemon serves, with counters ([`crate::status::Status`]).
    Status,
    /// Stop as SIGTERM does: hand VRRP over, then detach and remove the pins.
    Stop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The reload was applied; one line per change, in the operator's words.
    Reloaded {
        changes: Vec<String>,
    },
    /// The request was refused; the running state is unchanged.
    Refused {
        errors: Vec<String>,
    },
    Status(Box<crate::status::Status>),
    /// The daemon is stopping (its pid, to wait for).
    Stopping {
        pid: u32,
    },
}

/// A request as the daemon's main loop receives it.
pub struct Incoming {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// The listening socket; removed when dropped.
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Binds the socket (replacing a stale one: the caller holds the instance lock) and serves
    /// it on a task of its own, handing each request to `requests`.
    pub fn serve(path: &Path, requests: mpsc::Sender<Incoming>) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // EMFILE and the like: back off rather than spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let requests = requests.clone();
                tokio::spawn(async move {
                    serve_client(stream, requests).await;
                    drop(permit);
                });
            }
        });
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the peer may talk to the daemon: root, or the daemon's own user.
fn trusted_uid(uid: u32) -> bool {
    // SAFETY: geteuid cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

fn peer_credentials(fd: i32) -> std::io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred)
}

async fn serve_client(stream: tokio::net::UnixStream, requests: mpsc::Sender<Incoming>) {
    let (read, mut write) = stream.into_split();
    let allowed = match peer_credentials(read.as_ref().as_raw_fd()) {
        Ok(cred) if trusted_uid(cred.uid) => Ok(()),
        Ok(cred) => Err(format!(
            "uid {} may not control xlb: the control socket is root's",
            cred.uid
        )),
        Err(e) => Err(format!("reading the peer's credentials: {e}")),
    };
    let response = match allowed {
        Ok(()) => read_request(read).await,
        Err(e) => Err(e),
    };
    let response = match response {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if requests.send(Incoming { request, reply }).await.is_err() {
                Response::Refused {
                    errors: vec!["xlb is stopping".into()],
                }
            } else {
                answer.await.unwrap_or_else(|_| Response::Refused {
                    errors: vec!["xlb dropped the request (stopping?)".into()],
                })
            }
        }
        Err(e) => Response::Refused { errors: vec![e] },
    };
    if let Ok(mut line) = serde_json::to_vec(&response) {
        line.push(b'\n');
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, write.write_all(&line)).await;
    }
}

async fn read_request(read: tokio::net::unix::OwnedReadHalf) -> Result<Request, String> {
    use tokio::io::AsyncReadExt as _;
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(format!("no request within {REQUEST_TIMEOUT:?}")),
        Ok(Err(e)) => return Err(format!("reading the request: {e}")),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
    }
    serde_json::from_slice(&line).map_err(|e| format!("not a request: {e}"))
}

/// Sends one request to the xlb listening at `path` and waits for its answer.
pub fn request(path: &Path, request: &Request) -> Result<Response> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no xlb is running here: there is no control socket at {}",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("examining {}", path.display())),
    };
    use std::os::unix::fs::FileTypeExt as _;
    if !meta.file_type().is_socket() {
        bail!("{} is not a socket", path.display());
    }
    if !trusted_uid(meta.uid()) {
        bail!(
            "{} belongs to uid {}, not to root: refusing to talk to it",
            path.display(),
            meta.uid()
        );
    }
    let stream = UnixStream::connect(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            anyhow::anyhow!(
                "no xlb is running here: nobody listens on {} (left by an xlb that was killed?)",
                path.display()
            )
        } else if e.kind() == std::io::ErrorKind::PermissionDenied {
            anyhow::anyhow!("{}: permission denied (run as root)", path.display())
        } else {
            anyhow::Error::from(e).context(format!("connecting to {}", path.display()))
        }
    })?;
    let cred = peer_credentials(stream.as_raw_fd()).context("reading the daemon's credentials")?;
    if !trusted_uid(cred.uid) {
        bail!(
            "the process on {} (pid {}) runs as uid {}, not root: refusing to talk to it",
            path.display(),
            cred.pid,
            cred.uid
        );
    }
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).context("encoding the request")?;
    line.push(b'\n');
    (&stream).write_all(&line).context("sending the request")?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .take(1 << 20)
        .read_line(&mut answer)
        .with_context(|| format!("waiting for xlb (pid {}) to answer", cred.pid))?;
    if answer.is_empty() {
        bail!(
            "xlb (pid {}) closed the connection without answering",
            cred.pid
        );
    }
    serde_json::from_str(&answer)
        .with_context(|| format!("xlb (pid {}) answered {answer:?}", cred.pid))
}
