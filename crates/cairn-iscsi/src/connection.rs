//! One iSCSI connection (one session: MaxConnections is 1): login, then the full feature phase.
//!
//! Invariants:
//! - PDUs are read in order and cut by [`PduDecoder`] against the data-segment length this side
//!   declared; a header digest error, an oversize segment or a sequence error closes the
//!   connection (error recovery level 0), other malformed PDUs get a Reject.
//! - StatSN advances by one for each status-bearing PDU, in the order they are written; every
//!   PDU written carries the current ExpCmdSN and MaxCmdSN, and MaxCmdSN leaves room for exactly
//!   the commands the window still admits ([`limits::COMMAND_WINDOW`] in flight at most).
//! - Non-immediate commands outside the window, and duplicates, are ignored (RFC 7143 §4.2.2.1).
//! - An initiator silent for the NOP interval gets a NOP-In ping; one silent for two intervals is
//!   deemed gone and its connection closed.
//! - PDUs are queued in the [`Outbox`] as they are made and written once the event that made
//!   them, and the command completions already waiting behind it, have been handled.
//! - The PDUs already received are handled together: the READs, and WRITEs without FUA, that
//!   they make ready are held back until the last is handled and then go to the blocking pool,
//!   reads and writes apart, in jobs of [`cairn_export::limits::BATCH_REQUESTS_MAX`] (one
//!   lookup or planning pass and one device batch each on a Cairn pool); nothing is held back
//!   while the connection waits.
//! - On logout, end of stream, reinstatement or server shutdown the connection stops reading,
//!   completes the commands it accepted (within [`limits::DRAIN_TIMEOUT_SECS`]), then closes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::command::{Done, Task};
use crate::keys::Params;
use crate::limits::{self, LOGIN_DATA_SEGMENT_BYTES_MAX, RECV_DATA_SEGMENT_BYTES};
use crate::login::{self, Login, Negotiated, SessionType, Step};
use crate::pdu::{op, reject, Digests, FrameError, Pdu, PduDecoder, RESERVED_TAG};
use crate::target::{Registration, Target};
use crate::text;
use crate::writer::{Held, Outbox};

pub(crate) type ConnResult<T> = std::result::Result<T, String>;

/// What woke the full feature phase.
enum Event {
    Stop(Stop),
    Reset,
    Done(Done),
    Ping,
    Pdu(ConnResult<Option<Result<Pdu, FrameError>>>),
}

/// When the initiator was last heard, and when the NOP-In ping still unanswered was sent (no
/// PDU heard since).
struct Liveness {
    heard: tokio::time::Instant,
    pinged: Option<tokio::time::Instant>,
    interval: Duration,
}

/// Serial number arithmetic (RFC 1982): `a < b`.
pub(crate) fn sn_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 1 << 31
}

/// Why the full feature phase stopped reading.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Logout,
    Closed,
}

pub(crate) struct Conn {
    pub target: Arc<Target>,
    rd: OwnedReadHalf,
    out: Outbox,
    pub local: SocketAddr,
    input: BytesMut,
    decoder: PduDecoder,
    digests: Digests,
    stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub params: Params,
    pub session_type: SessionType,
    pub tsih: u16,
    pub tasks: HashMap<u32, Task>,
    /// ITTs whose remaining unsolicited Data-Out is dropped (the command was answered early).
    pub discarding: HashSet<u32>,
    pub done_tx: mpsc::UnboundedSender<Done>,
    pub next_ttt: u32,
    /// This connection's in-flight byte budget.
    pub bytes: Arc<Semaphore>,
    pub session: Option<crate::command::SessionState>,
    /// READs and WRITEs ready to run, sent to the blocking pool together once the PDUs
    /// already received are handled.
    pub ready: Vec<crate::command::Ready>,
    logout_reply: Option<Pdu>,
}

/// Serves one accepted socket until it closes or the server shuts down.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    target: Arc<Target>,
    shutdown: watch::Receiver<bool>,
) {
    match run(socket, target, shutdown).await {
        Ok(()) => tracing::debug!(%peer, "iSCSI connection closed"),
        Err(e) => tracing::info!(%peer, error = %e, "iSCSI connection ended"),
    }
}

async fn run(
    socket: TcpStream,
    target: Arc<Target>,
    mut shutdown: watch::Receiver<bool>,
) -> ConnResult<()> {
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let (rd, wr) = socket.into_split();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        target,
        rd,
        out: Outbox::new(wr),
        local,
        input: BytesMut::with_capacity(64 << 10),
        decoder: PduDecoder {
            digests: Digests::default(),
            data_bytes_max: LOGIN_DATA_SEGMENT_BYTES_MAX,
        },
        digests: Digests::default(),
        stat_sn: 0,
        exp_cmd_sn: 0,
        params: Params::default(),
        session_type: SessionType::Normal,
        tsih: 0,
        tasks: HashMap::new(),
        discarding: HashSet::new(),
        done_tx,
        next_ttt: 1,
        bytes: Arc::new(Semaphore::new(
            limits::CONNECTION_IN_FLIGHT_BYTES_MAX as usize,
        )),
        session: None,
        ready: Vec::new(),
        logout_reply: None,
    };
    let deadline = Duration::from_secs(limits::LOGIN_TIMEOUT_SECS);
    let negotiated = tokio::select! {
        r = tokio::time::timeout(deadline, conn.login()) => r.map_err(|_| "login timed out".to_string())??,
        _ = shutdown.changed() => return Err("server shutting down during login".into()),
    };
    let Some((negotiated, reg)) = negotiated else {
        return Ok(());
    };
    let ended = conn
        .full_feature(&negotiated, reg, &mut done_rx, shutdown)
        .await;
    conn.target
        .unregister(&negotiated.initiator_name, negotiated.isid, conn.tsih);
    ended
}

impl Conn {
    /// The highest CmdSN the window admits now.
    pub fn max_cmd_sn(&self) -> u32 {
        let free = limits::COMMAND_WINDOW.saturating_sub(self.tasks.len() as u32);
        self.exp_cmd_sn.wrapping_add(free).wrapping_sub(1)
    }

    /// Fills StatSN (advancing it when `status`), ExpCmdSN and MaxCmdSN, then queues the PDU.
    pub async fn send(&mut self, pdu: Pdu, status: bool) -> ConnResult<()> {
        self.send_holding(pdu, status, Held::new()).await
    }

    /// [`Conn::send`] for the PDU that ends a command: `held`, the command's in-flight charges,
    /// is returned once the PDU is written.
    pub async fn send_holding(&mut self, mut pdu: Pdu, status: bool, held: Held) -> ConnResult<()> {
        if status {
            pdu.set_u32(24, self.stat_sn);
            self.stat_sn = self.stat_sn.wrapping_add(1);
        } else if matches!(pdu.opcode(), op::R2T | op::NOP_IN) {
            pdu.set_u32(24, self.stat_sn);
        }
        pdu.set_u32(28, self.exp_cmd_sn);
        pdu.set_u32(32, self.max_cmd_sn());
        let (head, tail) = pdu.encode_parts(self.digests);
        self.out
            .push([head, pdu.data, tail], held)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Writes the PDUs queued.
    pub async fn flush(&mut self) -> ConnResult<()> {
        self.out
            .flush()
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Reads the next whole PDU; `None` at end of stream.
    async fn next_pdu(&mut self) -> ConnResult<Option<Result<Pdu, FrameError>>> {
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(pdu)) => return Ok(Some(Ok(pdu))),
                Ok(None) => {}
                Err(e) => return Ok(Some(Err(e))),
            }
            let n = self
                .rd
                .read_buf(&mut self.input)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// Runs the login phase; `None` if the initiator went away or the login failed.
    async fn login(&mut self) -> ConnResult<Option<(Negotiated, Registration)>> {
        let mut login = Login::new(self.target.login.clone());
        let mut first = true;
        loop {
            let pdu = match self.next_pdu().await? {
                None => return Ok(None),
                Some(Err(e)) => return Err(format!("during login: {e}")),
                Some(Ok(p)) => p,
            };
            if pdu.opcode() != op::LOGIN {
                return Err(format!("opcode {:#x} during login", pdu.opcode()));
            }
            if first {
                first = false;
                self.stat_sn = pdu.u32_at(28);
                self.exp_cmd_sn = pdu.u32_at(24);
                let tsih = pdu.u16_at(14);
                if tsih != 0 {
                    let status = if self.target.has_tsih(tsih) {
                        login::status::TOO_MANY_CONNECTIONS
                    } else {
                        login::status::SESSION_DOES_NOT_EXIST
                    };
                    self.login_reply(
                        &pdu,
                        &login::Reply {
                            transit: false,
                            csg: 0,
                            nsg: 0,
                            status,
                            text: Vec::new(),
                        },
                        0,
                    )
                    .await?;
                    return Ok(None);
                }
            }
            match login.step(&pdu) {
                Step::Continue(r) => self.login_reply(&pdu, &r, 0).await?,
                Step::Fail(r) => {
                    self.login_reply(&pdu, &r, 0).await?;
                    return Ok(None);
                }
                Step::Done(r, n) => {
                    let reg = self.target.register(&n.initiator_name, n.isid);
                    self.tsih = reg.tsih;
                    self.login_reply(&pdu, &r, self.tsih).await?;
                    self.params = n.params.clone();
                    self.session_type = n.session_type;
                    self.digests = Digests {
                        header: n.params.header_digest,
                        data: n.params.data_digest,
                    };
                    self.decoder = PduDecoder {
                        digests: self.digests,
                        data_bytes_max: RECV_DATA_SEGMENT_BYTES,
                    };
                    return Ok(Some((*n, reg)));
                }
            }
        }
    }

    async fn login_reply(&mut self, req: &Pdu, r: &login::Reply, tsih: u16) -> ConnResult<()> {
        let mut p = Pdu::new(op::LOGIN_RESPONSE);
        p.bhs[1] = (if r.transit { 0x80 } else { 0 }) | (r.csg << 2) | r.nsg;
        p.bhs[8..14].copy_from_slice(&req.bhs[8..14]);
        p.set_u16(14, tsih);
        p.set_itt(req.itt());
        p.bhs[36] = (r.status >> 8) as u8;
        p.bhs[37] = r.status as u8;
        p.set_data(Bytes::from(r.text.clone()));
        self.send(p, true).await?;
        self.flush().await
    }

    async fn full_feature(
        &mut self,
        n: &Negotiated,
        reg: Registration,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
        mut shutdown: watch::Receiver<bool>,
    ) -> ConnResult<()> {
        let mut close = reg.close.clone();
        let wake = reg.wake.clone();
        self.session = Some(crate::command::SessionState::new(
            &self.target,
            reg,
            crate::pr::Nexus {
                initiator: n.initiator_name.clone(),
                isid: n.isid,
            },
        ));
        let interval = self.target.nop_interval;
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut live = Liveness {
            heard: tokio::time::Instant::now(),
            pinged: None,
            interval,
        };
        loop {
            debug_assert!(
                self.ready.is_empty(),
                "no command is held back while the connection waits"
            );
            let event = tokio::select! {
                biased;
                _ = shutdown.changed() => Event::Stop(Stop::Closed),
                _ = close.changed() => Event::Stop(Stop::Closed),
                _ = wake.notified() => Event::Reset,
                Some(done) = done_rx.recv() => Event::Done(done),
                _ = ping.tick() => Event::Ping,
                pdu = self.next_pdu() => Event::Pdu(pdu),
            };
            let stop = self.handle(event, done_rx, &mut live).await;
            self.launch_ready();
            let stop = stop?;
            self.flush().await?;
            if stop.is_some() {
                break;
            }
        }
        self.drain(done_rx).await?;
        if let Some(reply) = self.logout_reply.take() {
            self.send(reply, true).await?;
            self.flush().await?;
        }
        Ok(())
    }

    /// Handles one event of the full feature phase; `Some` when the connection is to stop.
    async fn handle(
        &mut self,
        event: Event,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
        live: &mut Liveness,
    ) -> ConnResult<Option<Stop>> {
        match event {
            Event::Stop(stop) => Ok(Some(stop)),
            Event::Reset => {
                self.apply_resets();
                Ok(None)
            }
            Event::Done(done) => {
                self.complete(done).await?;
                // Completions already waiting go out in the same write.
                while let Ok(done) = done_rx.try_recv() {
                    self.complete(done).await?;
                }
                Ok(None)
            }
            Event::Ping => {
                live.pinged = self
                    .keep_alive(live.heard, live.pinged, live.interval)
                    .await?;
                Ok(None)
            }
            Event::Pdu(pdu) => match pdu? {
                None => Ok(Some(Stop::Closed)),
                Some(Err(e)) => self.frame_error(e).await,
                Some(Ok(pdu)) => {
                    live.heard = tokio::time::Instant::now();
                    live.pinged = None;
                    let mut stop = self.dispatch(pdu).await?;
                    // The PDUs already received are handled before the READs and WRITEs they
                    // start go to the blocking pool, so that those go together (`launch_ready`).
                    while stop.is_none() {
                        stop = match self.decoder.decode(&mut self.input) {
                            Ok(Some(pdu)) => self.dispatch(pdu).await?,
                            Ok(None) => break,
                            Err(e) => self.frame_error(e).await?,
                        };
                    }
                    Ok(stop)
                }
            },
        }
    }

    /// Pings an initiator silent for an interval with a NOP-In it must answer; one that has not
    /// answered a ping for an interval since it was sent is gone, and its connection is closed. A
    /// connection is never closed without a ping first, however late the timer fires. Returns when
    /// the ping still unanswered was sent.
    async fn keep_alive(
        &mut self,
        heard: tokio::time::Instant,
        pinged: Option<tokio::time::Instant>,
        interval: Duration,
    ) -> ConnResult<Option<tokio::time::Instant>> {
        if let Some(sent) = pinged {
            debug_assert!(
                sent >= heard,
                "a ping is outstanding only until a PDU is heard"
            );
            if sent.elapsed() >= interval {
                return Err(format!(
                    "initiator silent for {}s after a NOP-In ping",
                    sent.elapsed().as_secs()
                ));
            }
            return Ok(pinged);
        }
        if heard.elapsed() < interval {
            return Ok(None);
        }
        let mut p = Pdu::new(op::NOP_IN);
        p.set_itt(RESERVED_TAG);
        p.set_u32(20, self.next_ttt);
        self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
        // StatSN is reported, not advanced, by a NOP-In that is not a response.
        self.send(p, false).await?;
        Ok(Some(tokio::time::Instant::now()))
    }

    /// Completes every accepted command that is still running.
    async fn drain(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) -> ConnResult<()> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(limits::DRAIN_TIMEOUT_SECS);
        while self.tasks.values().any(Task::running) {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(done)) => {
                    // The initiator may be gone: completing matters, the reply does not.
                    let _ = self.complete(done).await;
                }
                _ => break,
            }
        }
        let _ = self.flush().await;
        Ok(())
    }

    async fn frame_error(&mut self, e: FrameError) -> ConnResult<Option<Stop>> {
        match e {
            FrameError::DataDigest { bhs } => {
                self.reject(&bhs, reject::DATA_DIGEST).await?;
                Ok(None)
            }
            FrameError::DataTooLong { .. } | FrameError::AhsTooLong { .. } => {
                let mut bhs = [0u8; limits::BHS_BYTES];
                bhs.copy_from_slice(&self.input[..limits::BHS_BYTES]);
                self.reject(&bhs, reject::PROTOCOL_ERROR).await?;
                self.flush().await?;
                Err(e.to_string())
            }
            FrameError::HeaderDigest => Err(e.to_string()),
        }
    }

    pub async fn reject(&mut self, bhs: &[u8; limits::BHS_BYTES], reason: u8) -> ConnResult<()> {
        let mut p = Pdu::new(op::REJECT);
        p.bhs[2] = reason;
        p.set_itt(RESERVED_TAG);
        p.set_data(Bytes::copy_from_slice(bhs));
        self.send(p, true).await
    }

    /// Applies the CmdSN rules to a request; false if it is to be ignored.
    pub fn admit(&mut self, pdu: &Pdu) -> bool {
        if pdu.immediate() {
            return true;
        }
        let cmd_sn = pdu.u32_at(24);
        if cmd_sn != self.exp_cmd_sn || sn_lt(self.max_cmd_sn(), cmd_sn) {
            tracing::debug!(
                cmd_sn,
                exp = self.exp_cmd_sn,
                "CmdSN outside the window; ignored"
            );
            return false;
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        true
    }

    async fn dispatch(&mut self, pdu: Pdu) -> ConnResult<Option<Stop>> {
        let discovery = self.session_type == SessionType::Discovery;
        match pdu.opcode() {
            op::NOP_OUT => self.nop_out(pdu).await?,
            op::TEXT => self.text(pdu).await?,
            op::LOGOUT => return self.logout(pdu).await,
            op::SCSI_COMMAND if !discovery => self.scsi_command(pdu).await?,
            op::DATA_OUT if !discovery => self.data_out(pdu).await?,
            op::TASK_MGMT if !discovery => self.task_mgmt(pdu).await?,
            op::LOGIN => {
                self.reject(&pdu.bhs, reject::PROTOCOL_ERROR).await?;
                return Err("login request in full feature phase".into());
            }
            _ => self.reject(&pdu.bhs, reject::NOT_SUPPORTED).await?,
        }
        Ok(None)
    }

    async fn nop_out(&mut self, pdu: Pdu) -> ConnResult<()> {
        if !self.admit(&pdu) || pdu.itt() == RESERVED_TAG {
            return Ok(());
        }
        let mut p = Pdu::new(op::NOP_IN);
        p.set_lun(pdu.lun());
        p.set_itt(pdu.itt());
        p.set_u32(20, RESERVED_TAG);
        let echo = pdu.data.slice(
            ..pdu
                .data
                .len()
                .min(self.params.initiator_recv_data_bytes as usize),
        );
        p.set_data(echo);
        self.send(p, true).await
    }

    async fn text(&mut self, pdu: Pdu) -> ConnResult<()> {
        if !self.admit(&pdu) {
            return Ok(());
        }
        if pdu.flags() & 0x40 != 0 {
            // Continued text requests are not needed by any key served here.
            return self.reject(&pdu.bhs, reject::NOT_SUPPORTED).await;
        }
        let mut answer = Vec::new();
        match text::parse(&pdu.data) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    if k == "SendTargets"
                        && (v == "All" || v == self.target.login.target_name || v.is_empty())
                    {
                        let addr = match self.local {
                            SocketAddr::V4(a) => a.to_string(),
                            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
                        };
                        answer.push((
                            "TargetName".to_string(),
                            self.target.login.target_name.clone(),
                        ));
                        answer.push((
                            "TargetAddress".to_string(),
                            format!("{addr},{}", crate::node::PORTAL_GROUP_TAG),
                        ));
                    } else if k != "SendTargets" {
                        answer.push((k, "NotUnderstood".to_string()));
                    }
                }
            }
            Err(_) => return self.reject(&pdu.bhs, reject::PROTOCOL_ERROR).await,
        }
        let mut p = Pdu::new(op::TEXT_RESPONSE);
        p.set_lun(pdu.lun());
        p.set_itt(pdu.itt());
        p.set_u32(20, RESERVED_TAG);
        let data = text::encode(&answer);
        if data.len() > self.params.initiator_recv_data_bytes as usize {
            return self.reject(&pdu.bhs, reject::NOT_SUPPORTED).await;
        }
        p.set_data(Bytes::from(data));
        self.send(p, true).await
    }

    async fn logout(&mut self, pdu: Pdu) -> ConnResult<Option<Stop>> {
        if !self.admit(&pdu) {
            return Ok(None);
        }
        let reason = pdu.flags() & 0x7f;
        let mut p = Pdu::new(op::LOGOUT_RESPONSE);
        p.set_itt(pdu.itt());
        // Removing a connection for recovery needs error recovery level 2.
        p.bhs[2] = if reason == 2 { 2 } else { 0 };
        // Sent once the commands in flight have completed.
        self.logout_reply = Some(p);
        Ok(Some(Stop::Logout))
    }
}
