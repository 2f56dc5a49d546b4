//! SCSI commands in the full feature phase: LUN lookup, unit attentions, Data-Out collection
//! with R2T, execution on the blocking pool, Data-In with status in the last PDU, and task
//! management.
//!
//! Invariants:
//! - A command's data-out is gathered in offset order within FirstBurstLength (unsolicited) and
//!   MaxBurstLength (per R2T, one R2T outstanding), never beyond the expected transfer length nor
//!   [`TRANSFER_BYTES_MAX`]; a Data-Out out of sequence ends its command with ABORTED COMMAND and its remaining data is dropped.
//! - Each command holds a charge on the server's in-flight byte budget from admission until its
//!   response is written; when the budget is spent the command ends with TASK SET FULL.
//! - Data-In segments never exceed the initiator's MaxRecvDataSegmentLength; residuals follow
//!   RFC 7143 §11.4.5 (overflow when the command had more data than expected, underflow when less).
//! - An aborted task sends no response; LOGICAL UNIT RESET aborts the tasks of its LUN and leaves a
//!   unit attention for every other session.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use cairn_export::{Volume, VolumeInfo};
use tokio::sync::OwnedSemaphorePermit;

use crate::connection::{Conn, ConnResult};
use crate::limits::{
    COMMAND_CHARGE_BYTES, CONNECTION_IN_FLIGHT_BYTES_MAX, DISCARDING_MAX, TRANSFER_BYTES_MAX,
};
use crate::lu::{self, Outcome};
use crate::pdu::{op, reject, Pdu, RESERVED_TAG};
use crate::scsi::cdb::{self, Cdb};
use crate::scsi::pages::{self, Unit};
use crate::scsi::sense::{self, status, Sense};
use crate::target::{lock, Attentions, Registration, Target};

/// SCSI status TASK SET FULL.
const TASK_SET_FULL: u8 = 0x28;
/// DATA PHASE ERROR: Data-Out out of sequence.
const DATA_PHASE_ERROR: Sense = Sense::new(sense::key::ABORTED_COMMAND, 0x4b, 0x00);
/// INVALID FIELD IN INFORMATION UNIT: the expected length disagrees with the CDB.
const INVALID_FIELD_IN_IU: Sense = Sense::new(sense::key::ILLEGAL_REQUEST, 0x0e, 0x03);

/// An opened LUN of a session.
struct Lu {
    volume: Arc<dyn Volume>,
    size_bytes: u64,
}

/// What one session knows about its LUNs.
pub(crate) struct SessionState {
    target: Arc<Target>,
    initiator: String,
    reg: Registration,
    table: Vec<(u16, VolumeInfo)>,
    generation: u64,
    open: HashMap<u16, Lu>,
}

impl SessionState {
    pub fn new(target: &Arc<Target>, reg: Registration, initiator: &str) -> SessionState {
        let table = target.luns_for(initiator).unwrap_or_else(|e| {
            tracing::warn!(initiator, error = %e, "LUN table unavailable");
            Vec::new()
        });
        SessionState {
            target: target.clone(),
            initiator: initiator.to_string(),
            reg,
            generation: target.lun_generation(),
            table,
            open: HashMap::new(),
        }
    }

    fn attentions(&self) -> std::sync::MutexGuard<'_, Attentions> {
        lock(&self.reg.attentions)
    }

    /// Re-reads the LUN table when it changed; a change is a unit attention on every LUN.
    fn refresh(&mut self, rescan: bool) {
        if rescan {
            if let Err(e) = self.target.luns() {
                tracing::warn!(error = %e, "LUN table unavailable");
            }
        }
        let generation = self.target.lun_generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        let Ok(table) = self.target.luns_for(&self.initiator) else {
            return;
        };
        self.open.retain(|lun, lu| {
            table
                .iter()
                .any(|(l, v)| l == lun && v.id == lu.volume.id())
        });
        let mut attentions = lock(&self.reg.attentions);
        for lun in table.iter().map(|(l, _)| *l).chain([0]) {
            attentions.push(lun, sense::REPORTED_LUNS_CHANGED);
        }
        drop(attentions);
        self.table = table;
    }

    fn luns(&self) -> Vec<u16> {
        self.table.iter().map(|(l, _)| *l).collect()
    }

    /// Opens (or returns the opened) volume at `lun`.
    fn volume(&mut self, lun: u16) -> Option<Arc<dyn Volume>> {
        if !self.table.iter().any(|(l, _)| *l == lun) {
            self.refresh(true);
        }
        if let Some(lu) = self.open.get_mut(&lun) {
            let size = lu.volume.size_bytes();
            if size != lu.size_bytes {
                lu.size_bytes = size;
                lock(&self.reg.attentions).push(lun, sense::CAPACITY_CHANGED);
            }
            return Some(lu.volume.clone());
        }
        let (_, info) = self.table.iter().find(|(l, _)| *l == lun)?;
        let volume = self
            .target
            .exports
            .open(&info.name)
            .ok()
            .filter(|v| v.id() == info.id)?;
        let size_bytes = volume.size_bytes();
        self.open.insert(
            lun,
            Lu {
                volume: volume.clone(),
                size_bytes,
            },
        );
        Some(volume)
    }
}

/// Data-out still to come for a command.
pub(crate) struct Collect {
    cdb: Cdb,
    volume: Arc<dyn Volume>,
    unit: Unit,
    /// Bytes solicited and kept (the CDB's data-out, cut to the expected length).
    want: u32,
    /// Bytes the initiator may send unsolicited (the expected length, cut to FirstBurstLength).
    unsolicited_max: u32,
    /// Bytes received so far, kept or not.
    received: u32,
    buf: Vec<u8>,
    unsolicited: bool,
    ttt: u32,
    r2t_sn: u32,
    burst_end: u32,
    data_sn: u32,
}

impl Collect {
    /// Counts received data and keeps what the command takes.
    fn keep(&mut self, data: &[u8]) {
        self.received += data.len() as u32;
        let room = (self.want as usize).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Cuts a write or compare to the whole blocks received (expected length below the CDB's).
    fn whole_blocks(&mut self) {
        let bs = self.unit.block_bytes as usize;
        let blocks = self.buf.len() / bs;
        if let Cdb::Write { blocks: b, .. }
        | Cdb::Verify {
            blocks: b,
            bytchk: true,
            ..
        } = &mut self.cdb
        {
            *b = (*b).min(blocks as u32);
            self.buf.truncate(*b as usize * bs);
        }
    }
}

pub(crate) enum TaskState {
    Collecting(Box<Collect>),
    Running { aborted: bool },
}

/// A command admitted and not yet answered.
pub(crate) struct Task {
    lun: u16,
    pub(crate) state: TaskState,
    meta: Meta,
    permit: Option<OwnedSemaphorePermit>,
    charge: u64,
}

impl Task {
    pub fn running(&self) -> bool {
        matches!(self.state, TaskState::Running { .. })
    }
}

/// What the response of a command needs to know.
#[derive(Clone, Copy)]
struct Meta {
    itt: u32,
    lun_raw: u64,
    edtl: u32,
    /// Some(residual) for a command of the write direction.
    write_residual: Option<Residual>,
    alloc: u32,
}

/// A residual: the O or U flag and its count.
#[derive(Clone, Copy, Default)]
struct Residual {
    flags: u8,
    count: u32,
}

fn residual(expected: u64, actual: u64) -> Residual {
    match actual.cmp(&expected) {
        std::cmp::Ordering::Greater => Residual {
            flags: 0x04,
            count: (actual - expected).min(u32::MAX as u64) as u32,
        },
        std::cmp::Ordering::Less => Residual {
            flags: 0x02,
            count: (expected - actual) as u32,
        },
        std::cmp::Ordering::Equal => Residual::default(),
    }
}

/// An immediate answer: sense (CHECK CONDITION) or data (GOOD), for the command of `Meta`.
type Early = (Option<Sense>, Vec<u8>, Meta);

/// A finished execution, sent back from the blocking pool.
pub(crate) struct Done {
    itt: u32,
    outcome: Outcome,
}

fn alloc_len(cdb: &Cdb) -> u32 {
    match *cdb {
        Cdb::RequestSense { alloc }
        | Cdb::Inquiry { alloc, .. }
        | Cdb::ReadCapacity16 { alloc }
        | Cdb::GetLbaStatus { alloc, .. }
        | Cdb::ModeSense { alloc, .. }
        | Cdb::ReportLuns { alloc }
        | Cdb::ReportOpcodes { alloc, .. } => alloc,
        _ => u32::MAX,
    }
}

fn unit_of(target: &Target, v: &dyn Volume) -> Unit {
    let info = v.info();
    Unit {
        size_bytes: info.size_bytes,
        block_bytes: info.logical_block_size,
        read_only: info.read_only,
        naa: v.naa_designator(),
        serial: Target::serial(&info),
        target_name: target.login.target_name.clone(),
    }
}

impl Conn {
    fn state(&mut self) -> &mut SessionState {
        self.session
            .as_mut()
            .expect("full feature phase has a session")
    }

    pub(crate) async fn scsi_command(&mut self, pdu: Pdu) -> ConnResult<()> {
        if !self.admit(&pdu) {
            return Ok(());
        }
        let itt = pdu.itt();
        if self.tasks.contains_key(&itt) || itt == RESERVED_TAG {
            return self.reject(&pdu.bhs, reject::INVALID_FIELD).await;
        }
        let more_data = pdu.flags() & 0x80 == 0;
        let meta = Meta {
            itt,
            lun_raw: pdu.lun(),
            edtl: pdu.u32_at(20),
            write_residual: None,
            alloc: u32::MAX,
        };
        match self.prepare(&pdu, meta) {
            Ok(task) => self.start(task, pdu, more_data).await,
            Err((sense, data, meta)) => {
                if more_data {
                    self.discard(itt);
                }
                self.finish(meta, sense.map_or(Ok(data), Err)).await
            }
        }
    }

    /// Decodes a command and finds its LUN; `Err` answers it at once (REPORT LUNS, a LUN with no
    /// volume, a bad CDB or a pending unit attention).
    fn route(&mut self, pdu: &Pdu, meta: &mut Meta) -> Result<(Cdb, Arc<dyn Volume>), Early> {
        let decoded = cdb::decode(&pdu.bhs[32..48]);
        if let Ok(c) = &decoded {
            meta.alloc = alloc_len(c);
        }
        let meta = *meta;
        let lun = pages::decode_lun(meta.lun_raw);
        let state = self.state();
        // A LUN table changed by the periodic rescan becomes a unit attention here.
        state.refresh(false);
        if let Ok(Cdb::ReportLuns { alloc }) = decoded {
            state.refresh(true);
            if alloc < 16 {
                return Err((Some(Sense::invalid_cdb(6, None)), Vec::new(), meta));
            }
            if let Some(lun) = lun {
                state.attentions().remove(lun, sense::REPORTED_LUNS_CHANGED);
            }
            return Err((None, pages::report_luns(&state.luns()), meta));
        }
        let volume = lun.and_then(|l| state.volume(l));
        let (Some(lun), Some(volume)) = (lun, volume) else {
            return Err(match decoded {
                Ok(Cdb::Inquiry { evpd: false, .. }) => {
                    (None, pages::standard_inquiry(false), meta)
                }
                Err(s) => (Some(s), Vec::new(), meta),
                Ok(_) => (Some(sense::LUN_NOT_SUPPORTED), Vec::new(), meta),
            });
        };
        let cdb = decoded.map_err(|s| (Some(s), Vec::new(), meta))?;
        // INQUIRY and REPORT SUPPORTED OPERATION CODES do not report unit attentions; REQUEST
        // SENSE returns one as its data.
        if !matches!(cdb, Cdb::Inquiry { .. } | Cdb::ReportOpcodes { .. }) {
            if let Some(s) = state.attentions().take(lun) {
                return Err(match cdb {
                    Cdb::RequestSense { .. } => (None, s.to_bytes().to_vec(), meta),
                    _ => (Some(s), Vec::new(), meta),
                });
            }
        }
        Ok((cdb, volume))
    }

    /// Decides what data-out a routed command needs.
    fn prepare(&mut self, pdu: &Pdu, mut meta: Meta) -> Result<(Collect, Meta), Early> {
        let (cdb, volume) = self.route(pdu, &mut meta)?;
        let unit = unit_of(&self.target, &*volume);
        let writes = matches!(
            cdb,
            Cdb::Write { .. } | Cdb::WriteSame { .. } | Cdb::Unmap { .. }
        );
        if unit.read_only && writes {
            // Refused before any data is asked for.
            return Err((Some(sense::WRITE_PROTECTED), Vec::new(), meta));
        }
        let needed = lu::data_out_bytes(&cdb, unit.block_bytes);
        if needed > 0 || pdu.flags() & 0x20 != 0 {
            meta.write_residual = Some(residual(meta.edtl as u64, needed));
            if lu::data_out_exact(&cdb) && needed != meta.edtl as u64 {
                return Err((Some(INVALID_FIELD_IN_IU), Vec::new(), meta));
            }
        }
        let want = needed.min(meta.edtl as u64);
        if want > TRANSFER_BYTES_MAX as u64 {
            return Err((Some(Sense::invalid_cdb(7, None)), Vec::new(), meta));
        }
        let collect = Collect {
            cdb,
            volume,
            unit,
            want: want as u32,
            unsolicited_max: meta.edtl.min(self.params.first_burst_bytes),
            received: 0,
            buf: Vec::new(),
            unsolicited: false,
            ttt: RESERVED_TAG,
            r2t_sn: 0,
            burst_end: 0,
            data_sn: 0,
        };
        Ok((collect, meta))
    }

    async fn start(
        &mut self,
        (mut c, meta): (Collect, Meta),
        pdu: Pdu,
        more_data: bool,
    ) -> ConnResult<()> {
        let lun = pages::decode_lun(meta.lun_raw).unwrap_or(0);
        let read_bytes = match c.cdb {
            Cdb::Read { blocks, .. } | Cdb::Verify { blocks, .. } => {
                blocks as u64 * c.unit.block_bytes as u64
            }
            _ => 0,
        };
        let charge = (meta.edtl as u64)
            .max(read_bytes)
            .min(TRANSFER_BYTES_MAX as u64)
            + COMMAND_CHARGE_BYTES;
        let permit = if self.charged_bytes + charge <= CONNECTION_IN_FLIGHT_BYTES_MAX {
            self.target
                .bytes
                .clone()
                .try_acquire_many_owned(charge as u32)
                .ok()
        } else {
            None
        };
        let Some(permit) = permit else {
            if more_data {
                self.discard(meta.itt);
            }
            return self
                .status_only(meta, TASK_SET_FULL, None, Residual::default())
                .await;
        };
        if !pdu.data.is_empty()
            && (!self.params.immediate_data || pdu.data.len() as u64 > c.unsolicited_max as u64)
        {
            self.reject(&pdu.bhs, reject::PROTOCOL_ERROR).await?;
            return Err("immediate data beyond what was negotiated".into());
        }
        if more_data && self.params.initial_r2t {
            self.reject(&pdu.bhs, reject::PROTOCOL_ERROR).await?;
            return Err("unsolicited data with InitialR2T=Yes".into());
        }
        c.buf.reserve_exact(c.want as usize);
        c.keep(&pdu.data);
        c.unsolicited = more_data;
        self.charged_bytes += charge;
        let task = Task {
            lun,
            state: TaskState::Collecting(Box::new(c)),
            meta,
            permit: Some(permit),
            charge,
        };
        self.tasks.insert(meta.itt, task);
        self.advance(meta.itt).await
    }

    /// Sends the next R2T or starts the command once its data is all there.
    async fn advance(&mut self, itt: u32) -> ConnResult<()> {
        let max_burst = self.params.max_burst_bytes;
        let Some(task) = self.tasks.get_mut(&itt) else {
            return Ok(());
        };
        let TaskState::Collecting(c) = &mut task.state else {
            return Ok(());
        };
        let have = c.received;
        if c.unsolicited || (c.ttt != RESERVED_TAG && have < c.burst_end) {
            return Ok(());
        }
        if have < c.want {
            let len = (c.want - have).min(max_burst);
            c.ttt = self.next_ttt;
            self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
            c.burst_end = have + len;
            c.data_sn = 0;
            let mut r2t = Pdu::new(op::R2T);
            r2t.set_lun(task.meta.lun_raw);
            r2t.set_itt(itt);
            r2t.set_u32(20, c.ttt);
            r2t.set_u32(36, c.r2t_sn);
            r2t.set_u32(40, have);
            r2t.set_u32(44, len);
            c.r2t_sn += 1;
            return self.send(r2t, false).await;
        }
        let TaskState::Collecting(mut c) =
            std::mem::replace(&mut task.state, TaskState::Running { aborted: false })
        else {
            unreachable!("matched above")
        };
        c.whole_blocks();
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = lu::execute(&*c.volume, &c.unit, &c.cdb, &c.buf);
            let _ = done.send(Done { itt, outcome });
        });
        Ok(())
    }

    pub(crate) async fn data_out(&mut self, pdu: Pdu) -> ConnResult<()> {
        let itt = pdu.itt();
        let last = pdu.final_bit();
        if self.discarding.contains(&itt) {
            if last {
                self.discarding.remove(&itt);
            }
            return Ok(());
        }
        let Some(Task {
            state: TaskState::Collecting(c),
            ..
        }) = self.tasks.get_mut(&itt)
        else {
            // A Data-Out for a task that was aborted or never admitted.
            return Ok(());
        };
        let (ttt, data_sn, offset) = (pdu.u32_at(20), pdu.u32_at(36), pdu.u32_at(40));
        let have = c.received;
        let limit = if ttt == RESERVED_TAG {
            c.unsolicited_max
        } else {
            c.burst_end
        };
        let in_sequence = (ttt == RESERVED_TAG && c.unsolicited
            || ttt != RESERVED_TAG && ttt == c.ttt)
            && data_sn == c.data_sn
            && offset == have
            && have as u64 + pdu.data.len() as u64 <= limit as u64;
        if !in_sequence {
            tracing::info!(
                itt,
                data_sn,
                offset,
                "Data-Out out of sequence; the command is aborted"
            );
            return self.fail_collecting(itt, last).await;
        }
        c.keep(&pdu.data);
        c.data_sn += 1;
        if last && ttt == RESERVED_TAG {
            c.unsolicited = false;
        }
        if last && ttt != RESERVED_TAG && c.received < c.burst_end {
            return self.fail_collecting(itt, true).await;
        }
        self.advance(itt).await
    }

    /// Ends a command whose Data-Out broke the sequence: ABORTED COMMAND, DATA PHASE ERROR, and
    /// the rest of its data dropped.
    async fn fail_collecting(&mut self, itt: u32, last: bool) -> ConnResult<()> {
        let Some(task) = self.tasks.remove(&itt) else {
            return Ok(());
        };
        let meta = task.meta;
        self.release(task);
        if !last {
            self.discard(itt);
        }
        self.status_only(
            meta,
            status::CHECK_CONDITION,
            Some(DATA_PHASE_ERROR),
            Residual::default(),
        )
        .await
    }

    pub(crate) async fn complete(&mut self, done: Done) -> ConnResult<()> {
        let Some(task) = self.tasks.remove(&done.itt) else {
            return Ok(());
        };
        let aborted = matches!(task.state, TaskState::Running { aborted: true });
        let meta = task.meta;
        let r = if aborted {
            Ok(())
        } else {
            self.finish(meta, done.outcome).await
        };
        self.release(task);
        r
    }

    /// Answers a command: Data-In with status for data, otherwise a SCSI Response.
    async fn finish(&mut self, meta: Meta, outcome: Outcome) -> ConnResult<()> {
        match (outcome, meta.write_residual) {
            (Err(s), w) => {
                self.status_only(
                    meta,
                    status::CHECK_CONDITION,
                    Some(s),
                    w.unwrap_or(residual(meta.edtl as u64, 0)),
                )
                .await
            }
            (Ok(_), Some(w)) => self.status_only(meta, status::GOOD, None, w).await,
            (Ok(mut data), None) => {
                data.truncate(meta.alloc as usize);
                let r = residual(meta.edtl as u64, data.len() as u64);
                data.truncate(meta.edtl as usize);
                if data.is_empty() {
                    return self.status_only(meta, status::GOOD, None, r).await;
                }
                self.data_in(meta, Bytes::from(data), r).await
            }
        }
    }

    async fn data_in(&mut self, meta: Meta, data: Bytes, r: Residual) -> ConnResult<()> {
        let segment = self
            .params
            .initiator_recv_data_bytes
            .min(self.params.max_burst_bytes) as usize;
        let burst = self.params.max_burst_bytes as usize;
        let mut offset = 0usize;
        let mut data_sn = 0u32;
        while offset < data.len() {
            let end = (offset + segment)
                .min(data.len())
                .min((offset / burst + 1) * burst);
            let last = end == data.len();
            let mut p = Pdu::new(op::DATA_IN);
            p.bhs[1] = if last || end % burst == 0 { 0x80 } else { 0 };
            if last {
                p.bhs[1] |= 0x01 | r.flags;
                p.set_u32(44, r.count);
            }
            p.set_itt(meta.itt);
            p.set_u32(20, RESERVED_TAG);
            p.set_u32(36, data_sn);
            p.set_u32(40, offset as u32);
            p.set_data(data.slice(offset..end));
            self.send(p, last).await?;
            data_sn += 1;
            offset = end;
        }
        Ok(())
    }

    async fn status_only(
        &mut self,
        meta: Meta,
        scsi_status: u8,
        s: Option<Sense>,
        r: Residual,
    ) -> ConnResult<()> {
        let mut p = Pdu::new(op::SCSI_RESPONSE);
        p.bhs[1] = 0x80 | r.flags;
        p.bhs[3] = scsi_status;
        p.set_itt(meta.itt);
        p.set_u32(44, r.count);
        if let Some(s) = s {
            let mut data = (sense::SENSE_BYTES as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&s.to_bytes());
            p.set_data(Bytes::from(data));
        }
        self.send(p, true).await
    }

    pub(crate) async fn task_mgmt(&mut self, pdu: Pdu) -> ConnResult<()> {
        if !self.admit(&pdu) {
            return Ok(());
        }
        let function = pdu.flags() & 0x7f;
        let lun = pages::decode_lun(pdu.lun());
        let response = match function {
            1 => self.abort(|itt, _| itt == pdu.u32_at(20)),
            2 | 4 => {
                let lun = lun.unwrap_or(u16::MAX);
                self.abort(|_, l| l == lun);
                0
            }
            5 => match lun.filter(|&l| self.state().luns().contains(&l)) {
                None => 2,
                Some(l) => {
                    self.abort(|_, task_lun| task_lun == l);
                    self.state().attentions().clear(l);
                    self.target
                        .broadcast(l, sense::LUN_RESET_OCCURRED, self.tsih);
                    0
                }
            },
            8 => 4,
            _ => 5,
        };
        let mut p = Pdu::new(op::TASK_MGMT_RESPONSE);
        p.bhs[2] = response;
        p.set_itt(pdu.itt());
        self.send(p, true).await
    }

    /// Drops the rest of a command's unsolicited Data-Out. The set is bounded: an initiator that
    /// never ends its sequences loses the oldest entries (their Data-Out is then ignored anyway,
    /// as that of an unknown task).
    fn discard(&mut self, itt: u32) {
        if self.discarding.len() >= DISCARDING_MAX {
            self.discarding.clear();
        }
        self.discarding.insert(itt);
    }

    /// Returns a finished or dropped task's charge to the budgets.
    fn release(&mut self, task: Task) {
        self.charged_bytes -= task.charge;
        drop(task.permit);
    }

    /// Aborts the tasks `which` selects; the TMF response: 0 if any, 1 (no such task) if none.
    fn abort(&mut self, which: impl Fn(u32, u16) -> bool) -> u8 {
        let mut found = false;
        let itts: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(itt, t)| which(**itt, t.lun))
            .map(|(itt, _)| *itt)
            .collect();
        for itt in itts {
            found = true;
            let Some(task) = self.tasks.get_mut(&itt) else {
                continue;
            };
            if task.running() {
                task.state = TaskState::Running { aborted: true };
            } else if let Some(task) = self.tasks.remove(&itt) {
                self.release(task);
                self.discard(itt);
            }
        }
        if found {
            0
        } else {
            1
        }
    }
}
