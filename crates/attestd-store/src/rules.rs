//! Domain rules a store applies inside the atomic write of a change, as
//! pure functions of what that write read. Every backend calls these, so a
//! rule is stated (and tested) once, not once per storage engine.

use attestd_core::{reject, Rejection};

use crate::{DeviceEntry, Enrollment, StationEntry};

/// Whether `station` may handle units of `model` (`"*"` allows every model).
pub fn station_allows_model(station: &StationEntry, model: &str) -> bool {
    station
        .allowed_models
        .iter()
        .any(|m| m == "*" || m == model)
}

/// Refuses a station not allowed for `model`.
pub fn check_station_for_model(station: &StationEntry, model: &str) -> Result<(), Rejection> {
    if station_allows_model(station, model) {
        return Ok(());
    }
    Err(reject!(
        StationNotAuthorized,
        "station {} is not allowed to handle model {model}",
        station.station_id
    ))
}

/// The stations whose records a unit relies on (provisioning, calibration),
/// each once. A unit's verdict and its release decisions depend on whether
/// these are revoked.
pub fn stations_behind(unit: &DeviceEntry) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(2);
    for sid in [&unit.provisioning_station_id, &unit.calibration_station_id] {
        if !sid.is_empty() && !out.contains(&sid.as_str()) {
            out.push(sid);
        }
    }
    out
}

/// Refuses a record about `unit` from a station not allowed for the unit's
/// current model (whatever model the record itself names).
pub fn check_station_for_unit(station: &StationEntry, unit: &DeviceEntry) -> Result<(), Rejection> {
    if station_allows_model(station, &unit.model) {
        return Ok(());
    }
    Err(reject!(
        StationNotAuthorized,
        "station {} is not allowed for model {} of enrolled unit {}: a record about an \
         enrolled unit needs a station allowed for its current model",
        station.station_id,
        unit.model,
        unit.serial
    ))
}

/// What a second provisioning record changes of an enrolled unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reprovision {
    /// The device key changes (a re-key).
    pub rekey: bool,
    /// The model changes: (from, to).
    pub model: Option<(String, String)>,
    /// The hardware version changes: (from, to).
    pub hw_version: Option<(String, String)>,
}

impl Reprovision {
    /// Whether anything that identifies the unit changes.
    pub fn changes_identity(&self) -> bool {
        self.rekey || self.model.is_some() || self.hw_version.is_some()
    }

    /// The audit entry's account of the change ("" when nothing changes).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.rekey {
            parts.push("re-keys the unit".to_owned());
        }
        if let Some((a, b)) = &self.model {
            parts.push(format!("changes model {a} -> {b}"));
        }
        if let Some((a, b)) = &self.hw_version {
            parts.push(format!("changes hw_version {a} -> {b}"));
        }
        parts.join("; ")
    }
}

/// Admits a provisioning record for a unit that is already enrolled.
///
/// - The station must be allowed for the unit's current model as well as the
///   model the record names (a station of one product line cannot take over
///   another line's units).
/// - A record that repeats the unit's key, model and hardware version is a
///   plain re-provisioning (for example after a depot repair).
/// - A record that changes the key, the model or the hardware version must
///   name the unit's current provisioning record in `supersedes` and come
///   from a station allowed to re-key: an explicit, audited path, never a
///   silent overwrite.
pub fn admit_reprovisioning(
    station: &StationEntry,
    unit: &DeviceEntry,
    en: &Enrollment,
) -> Result<Reprovision, Rejection> {
    check_station_for_unit(station, unit)?;
    check_station_for_model(station, &en.model)?;
    let change = Reprovision {
        rekey: unit.spki_der != en.spki_der,
        model: (unit.model != en.model).then(|| (unit.model.clone(), en.model.clone())),
        hw_version: (unit.hw_version != en.hw_version)
            .then(|| (unit.hw_version.clone(), en.hw_version.clone())),
    };
    if !change.changes_identity() {
        return Ok(change);
    }
    let named = en.supersedes.as_deref() == Some(unit.provisioning_record_id.as_str());
    if !(station.allow_rekey && named) {
        let what = match (
            change.rekey,
            change.model.is_some() || change.hw_version.is_some(),
        ) {
            (true, false) => "another key".to_owned(),
            (false, _) => format!(
                "model {} hw_version {} (the record names model {} hw_version {})",
                unit.model, unit.hw_version, en.model, en.hw_version
            ),
            (true, true) => format!(
                "another key and model {} hw_version {} (the record names model {} \
                 hw_version {})",
                unit.model, unit.hw_version, en.model, en.hw_version
            ),
        };
        return Err(reject!(
            SerialEnrolled,
            "serial {} is enrolled with {what}; changing an enrolled unit's key, model or \
             hardware version needs \"supersedes\": \"{}\" from a station allowed to re-key",
            unit.serial,
            unit.provisioning_record_id
        ));
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestd_core::Reason;

    fn station(models: &[&str], rekey: bool) -> StationEntry {
        StationEntry {
            station_id: "st-1".into(),
            allowed_models: models.iter().map(|m| m.to_string()).collect(),
            allow_rekey: rekey,
            ..StationEntry::default()
        }
    }

    fn unit() -> DeviceEntry {
        DeviceEntry {
            serial: "PM200-1".into(),
            model: "PM-200".into(),
            hw_version: "1.0".into(),
            spki_der: vec![1, 2, 3],
            provisioning_record_id: "rec_a".into(),
            ..DeviceEntry::default()
        }
    }

    fn enrollment(model: &str, hw: &str, key: &[u8], supersedes: Option<&str>) -> Enrollment {
        Enrollment {
            model: model.into(),
            hw_version: hw.into(),
            spki_der: key.to_vec(),
            key_id: "sha256:00".into(),
            supersedes: supersedes.map(str::to_owned),
        }
    }

    #[test]
    fn a_station_of_another_model_cannot_take_over_a_unit() {
        // The attack found from outside: same (public) key, the station's own model.
        let e = admit_reprovisioning(
            &station(&["IP-100"], true),
            &unit(),
            &enrollment("IP-100", "1.0", &[1, 2, 3], Some("rec_a")),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::StationNotAuthorized);
        assert!(e.message.contains("model PM-200"), "{}", e.message);
    }

    #[test]
    fn repeating_the_same_identity_is_allowed() {
        let r = admit_reprovisioning(
            &station(&["PM-200"], false),
            &unit(),
            &enrollment("PM-200", "1.0", &[1, 2, 3], None),
        )
        .unwrap();
        assert!(!r.changes_identity());
        assert_eq!(r.describe(), "");
    }

    #[test]
    fn a_change_of_model_or_hardware_needs_supersedes_and_a_rekey_station() {
        for (models, rekey, supersedes) in [
            (&["*"][..], false, Some("rec_a")),
            (&["PM-200", "PM-300"][..], true, None),
            (&["*"][..], true, Some("rec_other")),
        ] {
            for en in [
                enrollment("PM-300", "1.0", &[1, 2, 3], supersedes),
                enrollment("PM-200", "2.0", &[1, 2, 3], supersedes),
            ] {
                let e = admit_reprovisioning(&station(models, rekey), &unit(), &en).unwrap_err();
                assert_eq!(e.reason, Reason::SerialEnrolled, "{}", e.message);
                assert!(e.message.contains("\"supersedes\": \"rec_a\""));
            }
        }
        let r = admit_reprovisioning(
            &station(&["PM-200", "PM-300"], true),
            &unit(),
            &enrollment("PM-300", "2.0", &[9], Some("rec_a")),
        )
        .unwrap();
        assert_eq!(
            r.describe(),
            "re-keys the unit; changes model PM-200 -> PM-300; changes hw_version 1.0 -> 2.0"
        );
    }

    #[test]
    fn the_stations_behind_a_unit_are_named_once() {
        let mut u = unit();
        assert!(stations_behind(&u).is_empty());
        u.provisioning_station_id = "line".into();
        u.calibration_station_id = "line".into();
        assert_eq!(stations_behind(&u), ["line"]);
        u.calibration_station_id = "depot".into();
        assert_eq!(stations_behind(&u), ["line", "depot"]);
    }

    #[test]
    fn a_station_must_be_allowed_for_the_new_model_too() {
        let e = admit_reprovisioning(
            &station(&["PM-200"], true),
            &unit(),
            &enrollment("PM-300", "1.0", &[1, 2, 3], Some("rec_a")),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::StationNotAuthorized);
    }
}
