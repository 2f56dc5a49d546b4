//! SCSI commands in the full feature phase: LUN lookup, unit attentions, Data-Out collection
//! with R2T, execution on the blocking pool, Data-In with status in the last PDU, and task
//! management.
//!
//! Invariants:
//! - A command's data-out is gathered in offset order within FirstBurstLength (unsolicited) and
//!   MaxBurstLength (per R2T, one R2T outstanding), never beyond the expected transfer length nor
//!   [`TRANSFER_BYTES_MAX`]; a Data-Out out of sequence ends its command with ABORTED COMMAND and its remaining data is dropped.
//! - Each command holds a charge on the connection's and the server's in-flight byte budgets
//!   from admission until its response is handed to the socket; when a budget is spent the
//!   command ends with TASK SET FULL.
//! - A command holds its volume (the export layer's lease: a delete answers In Use) from its
//!   arrival until its execution ends; between commands a session holds none of its LUNs.
//! - Data-In segments never exceed the initiator's MaxRecvDataSegmentLength; residuals follow
//!   RFC 7143 §11.4.5 (overflow when the command had more data than expected, underflow when less).
//! - An aborted task sends no response; LOGICAL UNIT RESET aborts the tasks of its LUN and leaves a
//!   unit attention for every other session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use bytes::Bytes;
use cairn_export::{batches, Volume, VolumeInfo};

use crate::buffers::{Buffer, Buffers};
use crate::connection::{Conn, ConnResult};
use crate::limits::{COMMAND_CHARGE_BYTES, DISCARDING_MAX, TRANSFER_BYTES_MAX};
use crate::lu;
use crate::pdu::{op, reject, Pdu, RESERVED_TAG};
use crate::pr::{LuReservation, Nexus};
use crate::scsi::cdb::{self, Cdb};
use crate::scsi::pages::{self, Unit};
use crate::scsi::sense::{self, status, Failure, Sense};
use crate::target::{lock, Attentions, Registration, Reset, Target};
use crate::writer::Held;

/// SCSI status TASK SET FULL.
const TASK_SET_FULL: u8 = 0x28;
/// DATA PHASE ERROR: Data-Out out of sequence.
const DATA_PHASE_ERROR: Sense = Sense::new(sense::key::ABORTED_COMMAND, 0x4b, 0x00);
/// INVALID FIELD IN INFORMATION UNIT: the expected length disagrees with the CDB.
const INVALID_FIELD_IN_IU: Sense = Sense::new(sense::key::ILLEGAL_REQUEST, 0x0e, 0x03);

/// A LUN a session has used. The volume handle (and with it the export layer's lease, which
/// makes a delete answer In Use) is held by the commands in flight on the LUN only: the session
/// keeps a weak reference, so an idle LUN can be deleted and the next command opens it again.
struct Lu {
    volume: Weak<dyn Volume>,
    size_bytes: u64,
    unit: Arc<Opened>,
}

/// What every command on one opened LUN shares: the volume's id and its reservation state.
pub(crate) struct Opened {
    id: String,
    pr: Arc<Mutex<LuReservation>>,
    writes: Arc<RwLock<()>>,
}

/// What one session knows about its LUNs.
pub(crate) struct SessionState {
    target: Arc<Target>,
    initiator: String,
    nexus: Arc<Nexus>,
    reg: Registration,
    table: Vec<(u16, VolumeInfo)>,
    generation: u64,
    open: HashMap<u16, Lu>,
}

impl SessionState {
    pub fn new(target: &Arc<Target>, reg: Registration, nexus: Nexus) -> SessionState {
        let initiator = nexus.initiator.clone();
        let table = target.luns_for(&initiator).unwrap_or_else(|e| {
            tracing::warn!(initiator, error = %e, "LUN table unavailable");
            Vec::new()
        });
        SessionState {
            target: target.clone(),
            initiator,
            nexus: Arc::new(nexus),
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
                .any(|(l, v)| l == lun && Target::serial(v) == lu.unit.id)
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

    /// The id (hex) of the volume this session sees at `lun`.
    fn volume_id_at(&self, lun: u16) -> Option<String> {
        self.table
            .iter()
            .find(|(l, _)| *l == lun)
            .map(|(_, v)| Target::serial(v))
    }

    /// The volume at `lun`, with its shared unit state: the handle the commands in flight hold,
    /// or a new one. A volume deleted since the table was read is found missing here; the table
    /// is then read again, which reports the change to every LUN as a unit attention.
    fn volume(&mut self, lun: u16) -> Option<(Arc<dyn Volume>, Arc<Opened>, Unit)> {
        if !self.table.iter().any(|(l, _)| *l == lun) {
            self.refresh(true);
        }
        let (_, info) = self.table.iter().find(|(l, _)| *l == lun)?;
        let held = self.open.get(&lun).and_then(|lu| lu.volume.upgrade());
        let volume = match held {
            Some(v) => v,
            None => match self.target.exports.open(&info.name) {
                Ok(v) if v.id() == info.id => v,
                _ => {
                    self.refresh(true);
                    return None;
                }
            },
        };
        // Read once per command: the size (a grown volume), the block size and read-only flag.
        let now = volume.info();
        let target = &self.target;
        let lu = self.open.entry(lun).or_insert_with(|| {
            let id = Target::serial(info);
            Lu {
                volume: Arc::downgrade(&volume),
                size_bytes: now.size_bytes,
                unit: Arc::new(Opened {
                    pr: target.reservations.of(&id),
                    writes: target.write_lock(&id),
                    id,
                }),
            }
        });
        lu.volume = Arc::downgrade(&volume);
        if now.size_bytes != lu.size_bytes {
            lu.size_bytes = now.size_bytes;
            lock(&self.reg.attentions).push(lun, sense::CAPACITY_CHANGED);
        }
        let unit = Unit {
            size_bytes: now.size_bytes,
            block_bytes: now.logical_block_size,
            read_only: now.read_only,
            naa: cairn_export::naa_designator(&now.id),
            serial: lu.unit.id.clone(),
            target_name: target.login.target_name.clone(),
        };
        Some((volume, lu.unit.clone(), unit))
    }
}

/// The data-out a command keeps (at most the bytes it wants), in a buffer aligned for direct
/// I/O so that the device writes it without a bounce copy.
struct DataOut {
    buf: Option<Buffer>,
    len: usize,
}

impl DataOut {
    fn new(want: usize, buffers: &Arc<Buffers>) -> DataOut {
        DataOut {
            buf: (want > 0).then(|| buffers.take(want)),
            len: 0,
        }
    }

    /// Appends what of `data` still fits.
    fn keep(&mut self, data: &[u8]) {
        let Some(buf) = &mut self.buf else {
            return;
        };
        let n = data.len().min(buf.len() - self.len);
        buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
    }

    fn kept(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..self.len])
    }

    fn len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Data-out still to come for a command.
pub(crate) struct Collect {
    cdb: Cdb,
    volume: Arc<dyn Volume>,
    unit: Unit,
    opened: Arc<Opened>,
    nexus: Arc<Nexus>,
    /// Bytes solicited and kept (the CDB's data-out, cut to the expected length).
    want: u32,
    /// Bytes the initiator may send unsolicited (the expected length, cut to FirstBurstLength).
    unsolicited_max: u32,
    /// Bytes received so far, kept or not.
    received: u32,
    buf: DataOut,
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
        self.buf.keep(data);
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
    /// The command's charges on the connection's and the server's in-flight budgets.
    held: Held,
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

/// An immediate answer: a failure (CHECK CONDITION, RESERVATION CONFLICT) or data (GOOD), for
/// the command of `Meta`.
type Early = (Option<Failure>, Vec<u8>, Meta);

/// A command routed to its LUN: the CDB, the volume and the unit's shared state.
type Routed = (Cdb, Arc<dyn Volume>, Arc<Opened>, Unit);

/// What a command produced, as the response reports it.
type Answer = Result<Bytes, Failure>;

/// A finished execution, sent back from the blocking pool.
pub(crate) struct Done {
    itt: u32,
    outcome: Answer,
}

/// Executes a command whose data-out is all there: RESERVE(6), RELEASE(6) and PERSISTENT
/// RESERVE IN and OUT on the unit's reservations, anything else on the volume unless a
/// reservation forbids it.
fn execute(target: &Target, c: &Collect) -> Answer {
    let unit = &c.opened;
    match &c.cdb {
        Cdb::Reserve6 => lock(&unit.pr).reserve6(&c.nexus).map(Bytes::from),
        Cdb::Release6 => lock(&unit.pr).release6(&c.nexus).map(Bytes::from),
        Cdb::PersistentReserveIn { sa, .. } => lock(&unit.pr).read(*sa).map(Bytes::from),
        Cdb::PersistentReserveOut { prout, param_len } => {
            let aborted = target.reservations.out(
                &unit.id,
                &unit.pr,
                &c.nexus,
                prout,
                c.buf.kept(),
                *param_len,
            )?;
            for n in aborted {
                target.reset_nexus(&n, Reset::Preempted(unit.id.clone()));
            }
            Ok(Bytes::new())
        }
        cdb => {
            reservation_allows(c)?;
            let _shared = lu::changes_medium(cdb)
                .then(|| unit.writes.read().unwrap_or_else(PoisonError::into_inner));
            let _exclusive = matches!(cdb, Cdb::CompareAndWrite { .. })
                .then(|| unit.writes.write().unwrap_or_else(PoisonError::into_inner));
            lu::execute(&*c.volume, &c.unit, cdb, c.buf.kept(), &target.buffers)
                .map_err(Failure::Check)
        }
    }
}

/// Fails a command a reservation forbids. Checked again at execution: a reservation may have
/// been taken while the command's data-out came in (or since it was admitted).
fn reservation_allows(c: &Collect) -> Result<(), Failure> {
    if lock(&c.opened.pr).conflicts(&c.nexus, lu::access(&c.cdb)) {
        return Err(Failure::Conflict);
    }
    Ok(())
}

/// A READ, or a WRITE without FUA, ready to run, held back until the PDUs already received are
/// handled, so that the ones which arrived together go to their volume together.
pub(crate) struct Ready {
    itt: u32,
    io: ReadyIo,
    c: Box<Collect>,
}

#[derive(Clone, Copy)]
enum ReadyIo {
    Read { lba: u64, blocks: u32 },
    Write { lba: u64, blocks: u32 },
}

impl Ready {
    /// The command as [`Ready`] if it is one that goes to its volume together with others.
    fn of(itt: u32, c: Box<Collect>) -> Result<Ready, Box<Collect>> {
        let io = match c.cdb {
            Cdb::Read { lba, blocks, .. } => ReadyIo::Read { lba, blocks },
            Cdb::Write {
                lba,
                blocks,
                fua: false,
            } => ReadyIo::Write { lba, blocks },
            _ => return Err(c),
        };
        Ok(Ready { itt, io, c })
    }

    fn reads(&self) -> bool {
        matches!(self.io, ReadyIo::Read { .. })
    }
}

/// What a [`Ready`] command hands its volume: a read's offset and buffer, a write's offset.
enum Started {
    Read(u64, Buffer),
    Write(u64),
}

/// Executes commands that became ready together (all READs or all WRITEs), each as [`execute`]
/// would: the reservation, range and protection checks per command, then one
/// [`Volume::read_many`] or [`Volume::write_many`] per volume for those that passed (one lookup
/// or planning pass and one device batch on a Cairn pool), each with its own answer. Writes
/// hold their unit's medium lock shared, as one at a time do.
fn execute_ready(target: &Target, batch: &[Ready]) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(batch.len());
    let mut started: Vec<Option<Started>> = Vec::with_capacity(batch.len());
    for r in batch {
        let start = reservation_allows(&r.c).and_then(|()| {
            match r.io {
                ReadyIo::Read { lba, blocks } => {
                    lu::read_start(&r.c.unit, lba, blocks, &target.buffers)
                        .map(|(offset, buf)| Some(Started::Read(offset, buf)))
                }
                ReadyIo::Write { lba, blocks } => {
                    lu::write_start(&r.c.unit, lba, blocks, r.c.buf.kept())
                        .map(|offset| offset.map(Started::Write))
                }
            }
            .map_err(Failure::Check)
        });
        match start {
            Ok(Some(s)) => {
                answers.push(None);
                started.push(Some(s));
            }
            // A write of no blocks: nothing to do.
            Ok(None) => {
                answers.push(Some(Ok(Bytes::new())));
                started.push(None);
            }
            Err(f) => {
                answers.push(Some(Err(f)));
                started.push(None);
            }
        }
    }
    // One volume at a time (a session's commands mostly go to one LUN).
    let mut left: Vec<usize> = (0..batch.len()).filter(|&i| started[i].is_some()).collect();
    while let Some(&first) = left.first() {
        let (volume, opened) = (&batch[first].c.volume, &batch[first].c.opened);
        let (these, rest): (Vec<usize>, Vec<usize>) = left.iter().partition(|&&i| {
            Arc::ptr_eq(&batch[i].c.volume, volume) && Arc::ptr_eq(&batch[i].c.opened, opened)
        });
        left = rest;
        let taken: Vec<Started> = these
            .iter()
            .map(|&i| {
                started[i]
                    .take()
                    .expect("partitioned from the started ones")
            })
            .collect();
        if batch[first].reads() {
            let mut bufs: Vec<(u64, Buffer)> = taken
                .into_iter()
                .filter_map(|s| match s {
                    Started::Read(offset, buf) => Some((offset, buf)),
                    Started::Write(_) => None,
                })
                .collect();
            let results = {
                let mut reads: Vec<(u64, &mut [u8])> =
                    bufs.iter_mut().map(|(o, b)| (*o, &mut b[..])).collect();
                volume.read_many(&mut reads)
            };
            for ((i, (_, buf)), result) in these.into_iter().zip(bufs).zip(results) {
                answers[i] = Some(lu::read_end(buf, result).map_err(Failure::Check));
            }
        } else {
            let writes: Vec<(u64, &[u8])> = these
                .iter()
                .zip(&taken)
                .filter_map(|(&i, s)| match s {
                    Started::Write(offset) => Some((*offset, batch[i].c.buf.kept())),
                    Started::Read(..) => None,
                })
                .collect();
            let results = {
                let _shared = opened.writes.read().unwrap_or_else(PoisonError::into_inner);
                volume.write_many(&writes)
            };
            for (i, result) in these.into_iter().zip(results) {
                answers[i] = Some(lu::write_end(result).map_err(Failure::Check));
            }
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every command answered"))
        .collect()
}

fn alloc_len(cdb: &Cdb) -> u32 {
    match *cdb {
        Cdb::RequestSense { alloc }
        | Cdb::Inquiry { alloc, .. }
        | Cdb::ReadCapacity16 { alloc }
        | Cdb::GetLbaStatus { alloc, .. }
        | Cdb::ModeSense { alloc, .. }
        | Cdb::ReportLuns { alloc }
        | Cdb::ReportOpcodes { alloc, .. }
        | Cdb::PersistentReserveIn { alloc, .. } => alloc,
        _ => u32::MAX,
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
        self.apply_resets();
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
                self.finish(meta, sense.map_or(Ok(data.into()), Err), Held::new())
                    .await
            }
        }
    }

    /// Decodes a command and finds its LUN; `Err` answers it at once (REPORT LUNS, a LUN with no
    /// volume, a bad CDB or a pending unit attention).
    fn route(&mut self, pdu: &Pdu, meta: &mut Meta) -> Result<Routed, Early> {
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
                return Err((Some(Sense::invalid_cdb(6, None).into()), Vec::new(), meta));
            }
            if let Some(lun) = lun {
                state.attentions().remove(lun, sense::REPORTED_LUNS_CHANGED);
            }
            return Err((None, pages::report_luns(&state.luns()), meta));
        }
        let volume = lun.and_then(|l| state.volume(l));
        let (Some(lun), Some((volume, opened, unit))) = (lun, volume) else {
            return Err(match decoded {
                Ok(Cdb::Inquiry { evpd: false, .. }) => {
                    (None, pages::standard_inquiry(false), meta)
                }
                Err(s) => (Some(s.into()), Vec::new(), meta),
                Ok(_) => (Some(sense::LUN_NOT_SUPPORTED.into()), Vec::new(), meta),
            });
        };
        let cdb = decoded.map_err(|s| (Some(s.into()), Vec::new(), meta))?;
        // INQUIRY and REPORT SUPPORTED OPERATION CODES do not report unit attentions; REQUEST
        // SENSE returns one as its data.
        if !matches!(cdb, Cdb::Inquiry { .. } | Cdb::ReportOpcodes { .. }) {
            let pending = state.attentions().take(lun);
            let pending = pending.or_else(|| lock(&opened.pr).take_attention(&state.nexus));
            if let Some(s) = pending {
                return Err(match cdb {
                    Cdb::RequestSense { .. } => (None, s.to_bytes().to_vec(), meta),
                    _ => (Some(s.into()), Vec::new(), meta),
                });
            }
        }
        if lock(&opened.pr).conflicts(&state.nexus, lu::access(&cdb)) {
            return Err((Some(Failure::Conflict), Vec::new(), meta));
        }
        Ok((cdb, volume, opened, unit))
    }

    /// Decides what data-out a routed command needs.
    fn prepare(&mut self, pdu: &Pdu, mut meta: Meta) -> Result<(Collect, Meta), Early> {
        let (cdb, volume, opened, unit) = self.route(pdu, &mut meta)?;
        let nexus = self.state().nexus.clone();
        let writes = matches!(
            cdb,
            Cdb::Write { .. }
                | Cdb::WriteSame { .. }
                | Cdb::Unmap { .. }
                | Cdb::CompareAndWrite { .. }
        );
        if unit.read_only && writes {
            // Refused before any data is asked for.
            return Err((Some(sense::WRITE_PROTECTED.into()), Vec::new(), meta));
        }
        let needed = lu::data_out_bytes(&cdb, unit.block_bytes);
        if needed > 0 || pdu.flags() & 0x20 != 0 {
            meta.write_residual = Some(residual(meta.edtl as u64, needed));
            if lu::data_out_exact(&cdb) && needed != meta.edtl as u64 {
                // For COMPARE AND WRITE the NUMBER OF LOGICAL BLOCKS disagrees with the data.
                let s = match cdb {
                    Cdb::CompareAndWrite { .. } => Sense::invalid_cdb(13, None),
                    _ => INVALID_FIELD_IN_IU,
                };
                return Err((Some(s.into()), Vec::new(), meta));
            }
        }
        let want = needed.min(meta.edtl as u64);
        if want > TRANSFER_BYTES_MAX as u64 {
            return Err((Some(Sense::invalid_cdb(7, None).into()), Vec::new(), meta));
        }
        let collect = Collect {
            cdb,
            volume,
            unit,
            opened,
            nexus,
            want: want as u32,
            unsolicited_max: meta.edtl.min(self.params.first_burst_bytes),
            received: 0,
            buf: DataOut::new(want as usize, &self.target.buffers),
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
        let connection = self.bytes.clone().try_acquire_many_owned(charge as u32);
        let server = self
            .target
            .bytes
            .clone()
            .try_acquire_many_owned(charge as u32);
        let (Ok(connection), Ok(server)) = (connection, server) else {
            if more_data {
                self.discard(meta.itt);
            }
            return self
                .status_only(meta, TASK_SET_FULL, None, Residual::default(), Held::new())
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
        c.keep(&pdu.data);
        c.unsolicited = more_data;
        let task = Task {
            lun,
            state: TaskState::Collecting(Box::new(c)),
            meta,
            held: vec![connection, server],
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
        let c = match Ready::of(itt, c) {
            Ok(ready) => {
                self.ready.push(ready);
                return Ok(());
            }
            Err(c) => c,
        };
        let done = self.done_tx.clone();
        let target = self.target.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = execute(&target, &c);
            // The volume handle goes before the answer: once the initiator has it, nothing of
            // this command holds the volume (a delete then succeeds).
            drop(c);
            let _ = done.send(Done { itt, outcome });
        });
        Ok(())
    }

    /// Sends the commands held back ([`Ready`]) to the blocking pool, in the jobs [`batches`]
    /// makes.
    pub(crate) fn launch_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        for batch in batches(ready, Ready::reads) {
            let done = self.done_tx.clone();
            let target = self.target.clone();
            tokio::task::spawn_blocking(move || {
                let answers = execute_ready(&target, &batch);
                let itts: Vec<u32> = batch.iter().map(|r| r.itt).collect();
                // The volume handles go before the answers (as in `advance`).
                drop(batch);
                for (itt, outcome) in itts.into_iter().zip(answers) {
                    let _ = done.send(Done { itt, outcome });
                }
            });
        }
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
        if !last {
            self.discard(itt);
        }
        self.status_only(
            task.meta,
            status::CHECK_CONDITION,
            Some(DATA_PHASE_ERROR),
            Residual::default(),
            task.held,
        )
        .await
    }

    pub(crate) async fn complete(&mut self, done: Done) -> ConnResult<()> {
        let Some(task) = self.tasks.remove(&done.itt) else {
            return Ok(());
        };
        if matches!(task.state, TaskState::Running { aborted: true }) {
            return Ok(());
        }
        self.finish(task.meta, done.outcome, task.held).await
    }

    /// Answers a command: Data-In with status for data, otherwise a SCSI Response; `held` goes
    /// with the last PDU.
    async fn finish(&mut self, meta: Meta, outcome: Answer, held: Held) -> ConnResult<()> {
        match (outcome, meta.write_residual) {
            (Err(Failure::Conflict), w) => {
                let r = w.unwrap_or(residual(meta.edtl as u64, 0));
                self.status_only(meta, status::RESERVATION_CONFLICT, None, r, held)
                    .await
            }
            (Err(Failure::Check(s)), w) => {
                let r = w.unwrap_or(residual(meta.edtl as u64, 0));
                self.status_only(meta, status::CHECK_CONDITION, Some(s), r, held)
                    .await
            }
            (Ok(_), Some(w)) => self.status_only(meta, status::GOOD, None, w, held).await,
            (Ok(mut data), None) => {
                data.truncate(meta.alloc as usize);
                let r = residual(meta.edtl as u64, data.len() as u64);
                data.truncate(meta.edtl as usize);
                if data.is_empty() {
                    return self.status_only(meta, status::GOOD, None, r, held).await;
                }
                self.data_in(meta, data, r, held).await
            }
        }
    }

    async fn data_in(
        &mut self,
        meta: Meta,
        data: Bytes,
        r: Residual,
        mut held: Held,
    ) -> ConnResult<()> {
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
            let held = if last {
                std::mem::take(&mut held)
            } else {
                Held::new()
            };
            self.send_holding(p, last, held).await?;
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
        held: Held,
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
        self.send_holding(p, true, held).await
    }

    pub(crate) async fn task_mgmt(&mut self, pdu: Pdu) -> ConnResult<()> {
        if !self.admit(&pdu) {
            return Ok(());
        }
        self.apply_resets();
        let function = pdu.flags() & 0x7f;
        let lun = pages::decode_lun(pdu.lun());
        let unit = lun.and_then(|l| self.state().volume_id_at(l).map(|id| (l, id)));
        let response = match (function, unit) {
            (1, _) => self.abort(|itt, _| itt == pdu.u32_at(20)),
            (2, _) => {
                let lun = lun.unwrap_or(u16::MAX);
                self.abort(|_, l| l == lun);
                0
            }
            (4, None) => 0,
            (4, Some((l, id))) => {
                self.abort(|_, task_lun| task_lun == l);
                self.target.reset_others(&Reset::Cleared(id), self.tsih);
                0
            }
            (5, None) => 2,
            (5, Some((l, id))) => {
                self.reset_local(l);
                lock(&self.target.reservations.of(&id)).release_spc2(None);
                self.target.reset_others(&Reset::Unit(id), self.tsih);
                0
            }
            (6 | 7, _) => {
                for l in self.state().luns() {
                    self.reset_local(l);
                }
                self.target.reservations.reset_all();
                self.target.reset_others(&Reset::Target, self.tsih);
                if function == 7 {
                    self.target.close_all();
                }
                0
            }
            (8, _) => 4,
            _ => 5,
        };
        let mut p = Pdu::new(op::TASK_MGMT_RESPONSE);
        p.bhs[2] = response;
        p.set_itt(pdu.itt());
        self.send(p, true).await
    }

    /// LOGICAL UNIT RESET of `lun` in this session: its tasks are aborted, its pending unit
    /// attentions replaced by BUS DEVICE RESET FUNCTION OCCURRED.
    fn reset_local(&mut self, lun: u16) {
        self.abort(|_, task_lun| task_lun == lun);
        let mut attentions = self.state().attentions();
        attentions.clear(lun);
        attentions.push(lun, sense::LUN_RESET_OCCURRED);
    }

    /// Applies the resets other sessions queued for this one (before any new command).
    pub(crate) fn apply_resets(&mut self) {
        let resets = self.state().attentions().take_resets();
        for r in resets {
            let table: Vec<(u16, String)> = self
                .state()
                .table
                .iter()
                .map(|(l, v)| (*l, Target::serial(v)))
                .collect();
            for (l, id) in table {
                match &r {
                    Reset::Target => self.reset_local(l),
                    Reset::Unit(unit) if *unit == id => self.reset_local(l),
                    Reset::Preempted(unit) if *unit == id => {
                        self.abort(|_, task_lun| task_lun == l);
                    }
                    Reset::Cleared(unit)
                        if *unit == id && self.abort(|_, task_lun| task_lun == l) == 0 =>
                    {
                        self.state()
                            .attentions()
                            .push(l, sense::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
                    }
                    _ => {}
                }
            }
        }
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
            } else if self.tasks.remove(&itt).is_some() {
                // Its charges return with it.
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
