//! The access model (masking views of initiator, target-port and device groups), kept in the
//! data directory, and the [`HostAccess`] implementation through which management changes it.
//! With no view defined, the no-view default applies (every export, numbered by
//! [`crate::lunmap`]); once a view exists, an initiator sees exactly the LUNs of the views its
//! IQN is in, through the ports of their target groups, and an initiator in no view sees none.
//!
//! Invariants: the file is the truth once it exists — the configuration's views seed it only when
//! there is no file yet; the file is replaced whole (write, fsync, rename), and only after a
//! change passed every check of [`check`], so a refused change or a crash leaves the old model;
//! the model in memory is replaced only after the file was; every accepted change advances
//! [`Access::generation`], which live sessions compare to raise REPORTED LUNS DATA HAS CHANGED.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cairn_export::access::{
    AccessModel, Change, DeviceGroup, Group, GroupKind, HostAccess, Mapped, TargetPort, View,
};
use cairn_export::{Error, ErrorKind, Exports};
use serde::Deserialize;

use crate::limits::LUNS_MAX;
use crate::lunmap::write_atomic;
use crate::target::lock;

/// Largest LUN number a view may give.
pub const LUN_MAX: u16 = 255;

/// One volume (by name) at a LUN in a configured view.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedLun {
    pub volume: String,
    pub lun: u16,
}

/// A view as the configuration gives it, to seed the model on first start: its name, its
/// initiators and its volumes by name. It becomes a view over three groups of its own name, the
/// target group holding every target port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedView {
    pub name: String,
    pub initiators: Vec<String>,
    pub luns: Vec<SeedLun>,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> Error {
    Error::new(kind, msg)
}

/// The access model of the target, shared by the server and management.
pub struct Access {
    path: PathBuf,
    model: Mutex<AccessModel>,
    ports: Vec<TargetPort>,
    exports: Arc<dyn Exports>,
    generation: AtomicU64,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("path", &self.path).finish()
    }
}

impl Access {
    /// The model at `path`, or, when there is no file yet, the one `seed` makes (saved at once
    /// if it defines a view). A bad file or a seed naming an unknown volume is an error.
    pub fn open(
        path: PathBuf,
        seed: &[SeedView],
        ports: Vec<TargetPort>,
        exports: Arc<dyn Exports>,
    ) -> cairn_export::Result<Access> {
        let model = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                err(
                    ErrorKind::InvalidArgument,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                seeded(seed, &ports, exports.as_ref())?
            }
            Err(e) => return Err(err(ErrorKind::Io, path.display().to_string()).with_source(e)),
        };
        check(&model).map_err(|e| err(e.kind(), format!("{}: {}", path.display(), e.context())))?;
        if !model.views.is_empty() && !path.exists() {
            save(&path, &model)?;
        }
        Ok(Access {
            path,
            model: Mutex::new(model),
            ports,
            exports,
            generation: AtomicU64::new(0),
        })
    }

    /// Advances with every accepted change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// `None` with no view defined (the no-view default applies); else volume id (hex) by LUN
    /// for `initiator` logged in through `port`: the union of its views through that port.
    pub fn luns_of(&self, initiator: &str, port: &str) -> Option<BTreeMap<u16, String>> {
        let model = lock(&self.model);
        if model.views.is_empty() {
            return None;
        }
        let initiator = initiator.to_lowercase();
        Some(
            views_of(&model, &initiator)
                .filter(|v| {
                    model
                        .group(GroupKind::Target, &v.target_group)
                        .is_some_and(|g| g.members.iter().any(|m| m == port))
                })
                .filter_map(|v| model.device_group(&v.device_group))
                .flat_map(|g| g.volumes.iter().map(|m| (m.lun, m.volume.clone())))
                .collect(),
        )
    }
}

impl HostAccess for Access {
    fn model(&self) -> AccessModel {
        lock(&self.model).clone()
    }

    fn target_ports(&self) -> Vec<TargetPort> {
        self.ports.clone()
    }

    fn apply(&self, change: Change) -> cairn_export::Result<AccessModel> {
        let volumes: Vec<String> = self
            .exports
            .list()?
            .iter()
            .map(|v| crate::target::hex(&v.id))
            .collect();
        let ports: Vec<String> = self.ports.iter().map(|p| p.name.clone()).collect();
        let mut model = lock(&self.model);
        let mut next = model.clone();
        changed(&mut next, change, &Known { volumes, ports })?;
        check(&next)?;
        save(&self.path, &next)?;
        *model = next.clone();
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(next)
    }
}

fn save(path: &Path, model: &AccessModel) -> cairn_export::Result<()> {
    let bytes = serde_json::to_vec_pretty(model)
        .map_err(|e| err(ErrorKind::Io, "Cannot encode the access model").with_source(e))?;
    write_atomic(path, &bytes)
        .map_err(|e| err(ErrorKind::Io, format!("Cannot save {}", path.display())).with_source(e))
}

/// The views whose initiator group holds `initiator` (lower case).
fn views_of<'a>(model: &'a AccessModel, initiator: &'a str) -> impl Iterator<Item = &'a View> {
    model.views.iter().filter(move |v| {
        model
            .group(GroupKind::Initiator, &v.initiator_group)
            .is_some_and(|g| g.members.iter().any(|m| m == initiator))
    })
}

/// The model the configured views make: for each, three groups of its name.
fn seeded(
    seed: &[SeedView],
    ports: &[TargetPort],
    exports: &dyn Exports,
) -> cairn_export::Result<AccessModel> {
    let listed = exports.list()?;
    let mut model = AccessModel::default();
    for s in seed {
        let mut volumes = Vec::new();
        for l in &s.luns {
            let v = listed.iter().find(|v| v.name == l.volume).ok_or_else(|| {
                err(
                    ErrorKind::NotFound,
                    format!("View {}: no volume {}", s.name, l.volume),
                )
            })?;
            volumes.push(Mapped {
                volume: crate::target::hex(&v.id),
                lun: l.lun,
            });
        }
        let initiators: Vec<String> = s.initiators.iter().map(|i| i.to_lowercase()).collect();
        for i in &initiators {
            if !model.initiators.contains(i) {
                model.initiators.push(i.clone());
            }
        }
        model.initiator_groups.push(group(&s.name, initiators));
        model.target_groups.push(group(
            &s.name,
            ports.iter().map(|p| p.name.clone()).collect(),
        ));
        model.device_groups.push(DeviceGroup {
            name: s.name.clone(),
            volumes,
        });
        model.views.push(view_of_groups(&s.name));
    }
    Ok(model)
}

fn group(name: &str, members: Vec<String>) -> Group {
    Group {
        name: name.to_owned(),
        members,
    }
}

fn view_of_groups(name: &str) -> View {
    View {
        name: name.to_owned(),
        initiator_group: name.to_owned(),
        target_group: name.to_owned(),
        device_group: name.to_owned(),
    }
}

/// What exists outside the model: volume ids (hex) and target port names.
struct Known {
    volumes: Vec<String>,
    ports: Vec<String>,
}

/// Applies `change` to `m` (a copy: on error the caller drops it).
fn changed(m: &mut AccessModel, change: Change, known: &Known) -> cairn_export::Result<()> {
    match change {
        Change::AddInitiator(name) => add_initiator(m, name.to_lowercase()),
        Change::RemoveInitiator(name) => remove_initiator(m, &name.to_lowercase()),
        Change::CreateGroup {
            kind,
            name,
            members,
        } => create_group(m, kind, name, members, known),
        Change::AddMembers {
            kind,
            name,
            members,
            luns,
        } => add_members(m, kind, &name, members, &luns, known),
        Change::RemoveMembers {
            kind,
            name,
            members,
        } => remove_members(m, kind, &name, &members),
        Change::DeleteGroup { kind, name, force } => delete_group(m, kind, &name, force),
        Change::CreateView(view) => create_view(m, view),
        Change::All(changes) => changes.into_iter().try_for_each(|c| changed(m, c, known)),
        Change::DeleteView(name) => {
            let before = m.views.len();
            m.views.retain(|v| v.name != name);
            if m.views.len() == before {
                return Err(err(ErrorKind::NotFound, format!("No view {name}")));
            }
            Ok(())
        }
    }
}

fn add_initiator(m: &mut AccessModel, name: String) -> cairn_export::Result<()> {
    if name.is_empty() {
        return Err(err(ErrorKind::InvalidArgument, "Empty initiator name"));
    }
    if m.initiators.contains(&name) {
        return Err(err(
            ErrorKind::AlreadyExists,
            format!("Initiator {name} is known"),
        ));
    }
    m.initiators.push(name);
    Ok(())
}

fn remove_initiator(m: &mut AccessModel, name: &str) -> cairn_export::Result<()> {
    if !m.initiators.iter().any(|i| i == name) {
        return Err(err(ErrorKind::NotFound, format!("No initiator {name}")));
    }
    if let Some(g) = m
        .initiator_groups
        .iter()
        .find(|g| g.members.iter().any(|i| i == name))
    {
        return Err(err(
            ErrorKind::InUse,
            format!("Initiator {name} is in group {}", g.name),
        ));
    }
    m.initiators.retain(|i| i != name);
    Ok(())
}

fn name_taken(m: &AccessModel, kind: GroupKind, name: &str) -> bool {
    match kind {
        GroupKind::Device => m.device_group(name).is_some(),
        _ => m.group(kind, name).is_some(),
    }
}

fn create_group(
    m: &mut AccessModel,
    kind: GroupKind,
    name: String,
    members: Vec<String>,
    known: &Known,
) -> cairn_export::Result<()> {
    if name.is_empty() {
        return Err(err(ErrorKind::InvalidArgument, "Empty group name"));
    }
    if name_taken(m, kind, &name) {
        return Err(err(
            ErrorKind::AlreadyExists,
            format!("A {kind:?} group named {name} exists"),
        ));
    }
    match kind {
        GroupKind::Initiator => m.initiator_groups.push(group(&name, Vec::new())),
        GroupKind::Target => m.target_groups.push(group(&name, Vec::new())),
        GroupKind::Device => m.device_groups.push(DeviceGroup {
            name: name.clone(),
            volumes: Vec::new(),
        }),
    }
    add_members(m, kind, &name, members, &[], known)
}

fn groups_mut<'a>(m: &'a mut AccessModel, kind: GroupKind, name: &str) -> Option<&'a mut Group> {
    let groups = match kind {
        GroupKind::Initiator => &mut m.initiator_groups,
        GroupKind::Target => &mut m.target_groups,
        GroupKind::Device => return None,
    };
    groups.iter_mut().find(|g| g.name == name)
}

fn no_group(kind: GroupKind, name: &str) -> Error {
    err(ErrorKind::NotFound, format!("No {kind:?} group {name}"))
}

fn add_members(
    m: &mut AccessModel,
    kind: GroupKind,
    name: &str,
    members: Vec<String>,
    luns: &[u16],
    known: &Known,
) -> cairn_export::Result<()> {
    if kind == GroupKind::Device {
        return add_volumes(m, name, members, luns, known);
    }
    let (valid, what) = match kind {
        GroupKind::Initiator => (&m.initiators, "initiator"),
        _ => (&known.ports, "target port"),
    };
    let members: Vec<String> = members
        .into_iter()
        .map(|s| {
            if kind == GroupKind::Initiator {
                s.to_lowercase()
            } else {
                s
            }
        })
        .collect();
    if let Some(unknown) = members.iter().find(|s| !valid.contains(s)) {
        return Err(err(ErrorKind::NotFound, format!("No {what} {unknown}")));
    }
    let g = groups_mut(m, kind, name).ok_or_else(|| no_group(kind, name))?;
    for s in members {
        if !g.members.contains(&s) {
            g.members.push(s);
        }
    }
    Ok(())
}

fn add_volumes(
    m: &mut AccessModel,
    name: &str,
    volumes: Vec<String>,
    luns: &[u16],
    known: &Known,
) -> cairn_export::Result<()> {
    if !luns.is_empty() && luns.len() != volumes.len() {
        return Err(err(
            ErrorKind::InvalidArgument,
            "One LUN number per volume, or none",
        ));
    }
    if let Some(unknown) = volumes.iter().find(|v| !known.volumes.contains(v)) {
        return Err(err(ErrorKind::NotFound, format!("No volume {unknown}")));
    }
    for (i, volume) in volumes.into_iter().enumerate() {
        let lun = match luns.get(i) {
            Some(&lun) => lun,
            None => free_lun(m, name)
                .ok_or_else(|| err(ErrorKind::InvalidArgument, format!("No free LUN in {name}")))?,
        };
        let g = m
            .device_groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| no_group(GroupKind::Device, name))?;
        if g.volumes.iter().any(|v| v.volume == volume) {
            continue;
        }
        if g.volumes.iter().any(|v| v.lun == lun) {
            return Err(err(
                ErrorKind::InUse,
                format!("LUN {lun} is used in {name}"),
            ));
        }
        g.volumes.push(Mapped { volume, lun });
    }
    Ok(())
}

/// The smallest LUN no initiator that sees device group `name` has in use.
fn free_lun(m: &AccessModel, name: &str) -> Option<u16> {
    let mut used: Vec<u16> = m
        .device_group(name)
        .map(|g| g.volumes.iter().map(|v| v.lun).collect())
        .unwrap_or_default();
    for v in m.views.iter().filter(|v| v.device_group == name) {
        let Some(ig) = m.group(GroupKind::Initiator, &v.initiator_group) else {
            continue;
        };
        for i in &ig.members {
            for other in views_of(m, i).filter_map(|w| m.device_group(&w.device_group)) {
                used.extend(other.volumes.iter().map(|v| v.lun));
            }
        }
    }
    (0..=LUN_MAX).find(|n| !used.contains(n))
}

fn remove_members(
    m: &mut AccessModel,
    kind: GroupKind,
    name: &str,
    members: &[String],
) -> cairn_export::Result<()> {
    let missing = |what: &str| {
        err(
            ErrorKind::InvalidArgument,
            format!("{what} is not in {name}"),
        )
    };
    if kind == GroupKind::Device {
        let g = m
            .device_groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| no_group(kind, name))?;
        if let Some(s) = members
            .iter()
            .find(|s| !g.volumes.iter().any(|v| v.volume == **s))
        {
            return Err(missing(s));
        }
        g.volumes.retain(|v| !members.contains(&v.volume));
        return Ok(());
    }
    let lower = kind == GroupKind::Initiator;
    let members: Vec<String> = members
        .iter()
        .map(|s| if lower { s.to_lowercase() } else { s.clone() })
        .collect();
    let g = groups_mut(m, kind, name).ok_or_else(|| no_group(kind, name))?;
    if let Some(s) = members.iter().find(|s| !g.members.contains(s)) {
        return Err(missing(s));
    }
    g.members.retain(|s| !members.contains(s));
    Ok(())
}

fn delete_group(
    m: &mut AccessModel,
    kind: GroupKind,
    name: &str,
    force: bool,
) -> cairn_export::Result<()> {
    if !name_taken(m, kind, name) {
        return Err(no_group(kind, name));
    }
    let uses = |v: &View| match kind {
        GroupKind::Initiator => v.initiator_group == name,
        GroupKind::Target => v.target_group == name,
        GroupKind::Device => v.device_group == name,
    };
    if let Some(v) = m.views.iter().find(|v| uses(v)) {
        if !force {
            return Err(err(
                ErrorKind::InUse,
                format!("Group {name} is in view {}", v.name),
            ));
        }
    }
    m.views.retain(|v| !uses(v));
    match kind {
        GroupKind::Initiator => m.initiator_groups.retain(|g| g.name != name),
        GroupKind::Target => m.target_groups.retain(|g| g.name != name),
        GroupKind::Device => m.device_groups.retain(|g| g.name != name),
    }
    Ok(())
}

fn create_view(m: &mut AccessModel, view: View) -> cairn_export::Result<()> {
    if view.name.is_empty() {
        return Err(err(ErrorKind::InvalidArgument, "Empty view name"));
    }
    if m.view(&view.name).is_some() {
        return Err(err(
            ErrorKind::AlreadyExists,
            format!("A view named {} exists", view.name),
        ));
    }
    for (kind, name) in [
        (GroupKind::Initiator, &view.initiator_group),
        (GroupKind::Target, &view.target_group),
        (GroupKind::Device, &view.device_group),
    ] {
        if !name_taken(m, kind, name) {
            return Err(no_group(kind, name));
        }
    }
    m.views.push(view);
    Ok(())
}

/// The model's invariants: groups name known members, views name existing groups, LUNs at most
/// [`LUN_MAX`], and per initiator no LUN given two volumes, no volume two LUNs, at most
/// [`LUNS_MAX`] LUNs. A LUN clash is `InUse`, anything else `InvalidArgument`.
pub fn check(m: &AccessModel) -> cairn_export::Result<()> {
    let bad = |msg: String| Err(err(ErrorKind::InvalidArgument, msg));
    for g in &m.initiator_groups {
        if let Some(i) = g.members.iter().find(|i| !m.initiators.contains(i)) {
            return bad(format!("Group {}: unknown initiator {i}", g.name));
        }
    }
    for g in &m.device_groups {
        if let Some(v) = g.volumes.iter().find(|v| v.lun > LUN_MAX) {
            return bad(format!(
                "Group {}: LUN {} is above {LUN_MAX}",
                g.name, v.lun
            ));
        }
    }
    for v in &m.views {
        let complete = m.group(GroupKind::Initiator, &v.initiator_group).is_some()
            && m.group(GroupKind::Target, &v.target_group).is_some()
            && m.device_group(&v.device_group).is_some();
        if !complete {
            return bad(format!("View {}: a group is missing", v.name));
        }
    }
    m.initiators.iter().try_for_each(|i| check_initiator(m, i))
}

fn check_initiator(m: &AccessModel, initiator: &str) -> cairn_export::Result<()> {
    let mut by_lun: BTreeMap<u16, &str> = BTreeMap::new();
    let mut by_volume: BTreeMap<&str, u16> = BTreeMap::new();
    let groups = views_of(m, initiator).filter_map(|v| m.device_group(&v.device_group));
    for mapped in groups.flat_map(|g| g.volumes.iter()) {
        let lun_clash = by_lun
            .insert(mapped.lun, &mapped.volume)
            .is_some_and(|other| other != mapped.volume);
        let volume_clash = by_volume
            .insert(&mapped.volume, mapped.lun)
            .is_some_and(|other| other != mapped.lun);
        if lun_clash || volume_clash {
            return Err(err(
                ErrorKind::InUse,
                format!(
                    "Initiator {initiator} would see LUN {} or volume {} twice",
                    mapped.lun, mapped.volume
                ),
            ));
        }
    }
    if by_lun.len() > LUNS_MAX {
        return Err(err(
            ErrorKind::InvalidArgument,
            format!("Initiator {initiator} would see more than {LUNS_MAX} LUNs"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
