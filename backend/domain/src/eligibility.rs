//! Whether a fix may ship as a live patch, and by when: the seed's rules as pure
//! functions over plain data, with the policy that parameterises them.
//!
//! Live patches are for vulnerabilities scored CVSS >= 6.0, and for bugs that corrupt data
//! or make the system severely unstable when a security officer has signed off on that
//! exception with a written justification; they must stay small (the number of functions
//! the module replaces is within the policy's scope limit). A patch's change tier
//! (incident, emergency, scheduled) sets its deadline from the time the problem was
//! reported.

use crate::{Category, Tier};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use time::{Duration, OffsetDateTime};

/// The rules' parameters, from `policy.toml` in the data directory (defaults when absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Approvals needed on the current revision, never counting the author's.
    pub approvals_required: u32,
    /// The lowest CVSS base score that makes a vulnerability eligible.
    pub min_cvss: f64,
    /// Data-corruption and severe-instability fixes need a security officer's sign-off.
    pub security_officer_for_exceptions: bool,
    /// The release manager who ships a patch must not be its author.
    pub release_manager_not_author: bool,
    /// The most functions one live patch may replace.
    pub scope_limit: u32,
    /// Four eyes on accounts: an admin's grant of a role that signs off or manages users
    /// (reviewer, security officer, release manager, admin) made in the web UI or the API
    /// waits until a second admin confirms it, and a role granted or confirmed by an
    /// admin never approves a patch that admin wrote. The server's command line (`user
    /// add`, `user roles`) is the audited break-glass path and is not held.
    pub role_grants_need_second_admin: bool,
    /// Deadlines per change tier.
    pub deadlines: Deadlines,
    /// How long the audit trail stays online.
    pub audit: AuditRetention,
}

/// How long audit events stay in the database before they move into an archive segment
/// (a file that still verifies offline; nothing is deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditRetention {
    /// Months an event stays online, searchable on the audit page (PCI DSS 10.5.1 keeps a
    /// year of history with at least the last three months immediately available).
    pub online_months: u32,
}

impl Default for AuditRetention {
    fn default() -> AuditRetention {
        AuditRetention { online_months: 12 }
    }
}

/// The fewest months events may stay online (PCI DSS 10.5.1: three immediately
/// available).
pub const MIN_ONLINE_MONTHS: u32 = 3;

/// Time allowed from the report to shipping, per tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deadlines {
    /// Incident: hours.
    pub incident_hours: u32,
    /// Emergency change: hours.
    pub emergency_hours: u32,
    /// Scheduled change: days.
    pub scheduled_days: u32,
}

impl Default for Deadlines {
    fn default() -> Deadlines {
        Deadlines {
            incident_hours: 24,
            emergency_hours: 72,
            scheduled_days: 30,
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            approvals_required: 2,
            min_cvss: 6.0,
            security_officer_for_exceptions: true,
            release_manager_not_author: true,
            scope_limit: 30,
            role_grants_need_second_admin: true,
            deadlines: Deadlines::default(),
            audit: AuditRetention::default(),
        }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML, or unknown or mistyped keys.
    #[error("the policy is not valid: {0}")]
    Syntax(String),
    /// A value outside what the rules can work with.
    #[error("the policy is not valid: {0}")]
    Value(String),
}

impl Policy {
    /// Reads and checks a policy file's text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        policy.check()?;
        Ok(policy)
    }

    fn check(&self) -> Result<(), PolicyError> {
        let bad = |what: String| Err(PolicyError::Value(what));
        if self.approvals_required == 0 {
            return bad("approvals_required must be at least 1".into());
        }
        if !(0.0..=10.0).contains(&self.min_cvss) {
            return bad(format!(
                "min_cvss {} is not a CVSS score (0 to 10)",
                self.min_cvss
            ));
        }
        if self.scope_limit == 0 {
            return bad("scope_limit must be at least 1".into());
        }
        let d = &self.deadlines;
        let hours = [
            d.incident_hours,
            d.emergency_hours,
            d.scheduled_days.saturating_mul(24),
        ];
        if hours.contains(&0) {
            return bad("every deadline must be longer than zero".into());
        }
        if !(hours[0] <= hours[1] && hours[1] <= hours[2]) {
            return bad("deadlines must not shrink from incident to emergency to scheduled".into());
        }
        if !(MIN_ONLINE_MONTHS..=1200).contains(&self.audit.online_months) {
            return bad(format!(
                "audit.online_months {} is outside {MIN_ONLINE_MONTHS} to 1200 (PCI DSS 10.5.1 \
                 keeps the last three months immediately available)",
                self.audit.online_months
            ));
        }
        Ok(())
    }

    /// The deadline of a patch of `tier` reported at `reported`.
    pub fn deadline(&self, tier: Tier, reported: OffsetDateTime) -> OffsetDateTime {
        let d = &self.deadlines;
        reported
            + match tier {
                Tier::Incident => Duration::hours(i64::from(d.incident_hours)),
                Tier::Emergency => Duration::hours(i64::from(d.emergency_hours)),
                Tier::Scheduled => Duration::days(i64::from(d.scheduled_days)),
            }
    }
}

/// The policy in force and where it came from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedPolicy {
    /// The rules' parameters.
    pub policy: Policy,
    /// The file it was read from; `None` for the built-in defaults.
    pub path: Option<std::path::PathBuf>,
}

/// The name of the policy file in the data directory.
pub const POLICY_FILE: &str = "policy.toml";

impl LoadedPolicy {
    /// `DATA_DIR/policy.toml` when it exists, else the defaults. A file that exists but is
    /// not a valid policy is an error: running with rules other than the ones written
    /// down would be worse than not starting.
    pub fn load(data_dir: &std::path::Path) -> Result<LoadedPolicy, PolicyError> {
        let path = data_dir.join(POLICY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(LoadedPolicy {
                policy: Policy::from_toml(&text).map_err(|e| match e {
                    PolicyError::Syntax(why) => {
                        PolicyError::Syntax(format!("{}: {why}", path.display()))
                    }
                    PolicyError::Value(why) => {
                        PolicyError::Value(format!("{}: {why}", path.display()))
                    }
                })?,
                path: Some(path),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LoadedPolicy::default()),
            Err(e) => Err(PolicyError::Syntax(format!(
                "{} cannot be read: {e}",
                path.display()
            ))),
        }
    }

    /// Where it came from, for people.
    pub fn source(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => format!("built-in defaults (no {POLICY_FILE} in the data directory)"),
        }
    }

    /// The effective policy as TOML, every key spelled out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.policy).unwrap_or_else(|e| format!("# {e}"))
    }
}

/// A scored CVSS vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvssScore {
    /// The vector as given.
    pub vector: String,
    /// `3.0`, `3.1` or `4.0`.
    pub version: String,
    /// The base score (CVSS-BT for 4.0 as the vector allows).
    pub score: f64,
    /// none, low, medium, high, critical.
    pub severity: String,
}

/// Why a CVSS vector was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{vector}` is not a valid CVSS 3.x or 4.0 vector: {reason}")]
pub struct CvssError {
    /// The vector.
    pub vector: String,
    /// What the parser said.
    pub reason: String,
}

/// Parses and scores a CVSS 3.0, 3.1 or 4.0 vector.
pub fn score(vector: &str) -> Result<CvssScore, CvssError> {
    let error = |reason: String| CvssError {
        vector: vector.chars().take(80).collect(),
        reason,
    };
    let version = ["3.0", "3.1", "4.0"]
        .into_iter()
        .find(|v| vector.starts_with(&format!("CVSS:{v}/")))
        .ok_or_else(|| error("it must start with CVSS:3.0/, CVSS:3.1/ or CVSS:4.0/".into()))?;
    // The parser scores a vector with missing base metrics as 0.0: require them all.
    let required: &[&str] = if version == "4.0" {
        &[
            "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
        ]
    } else {
        &["AV", "AC", "PR", "UI", "S", "C", "I", "A"]
    };
    let keys: Vec<&str> = vector
        .split('/')
        .skip(1)
        .filter_map(|m| m.split_once(':').map(|(k, _)| k))
        .collect();
    let missing: Vec<&str> = required
        .iter()
        .filter(|k| !keys.contains(k))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(error(format!(
            "base metric(s) {} missing",
            missing.join(", ")
        )));
    }
    if let Some(twice) = keys
        .iter()
        .enumerate()
        .find_map(|(i, k)| keys[..i].contains(k).then_some(*k))
    {
        return Err(error(format!("metric {twice} given twice")));
    }
    let parsed = cvss::Cvss::from_str(vector).map_err(|e| error(e.to_string()))?;
    Ok(CvssScore {
        vector: vector.to_owned(),
        version: version.to_owned(),
        score: parsed.score(),
        severity: parsed.severity().as_str().to_owned(),
    })
}

/// What eligibility depends on.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The patch's CVSS vector, scored, if it has one.
    pub cvss: Option<&'a CvssScore>,
    /// What it fixes.
    pub category: Option<Category>,
    /// A security officer's sign-off on the exception, with its justification.
    pub exception_justification: Option<&'a str>,
    /// How many functions the module replaces, once analysed.
    pub functions_to_replace: Option<usize>,
    /// Why an analysis of the current revision says no live patch can be built from it
    /// for a target, if one does.
    pub analysis_problem: Option<&'a str>,
}

/// The verdict, with a reason for each rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    /// Whether the patch may ship as a live patch.
    pub eligible: bool,
    /// Why (or why not), one line per rule.
    pub reasons: Vec<String>,
}

/// Applies the eligibility rules.
pub fn assess(facts: &Facts<'_>, policy: &Policy) -> Eligibility {
    let mut reasons = Vec::new();
    let by_severity = match (
        facts.category.unwrap_or(Category::Vulnerability),
        facts.cvss,
    ) {
        (Category::Vulnerability, Some(cvss)) if cvss.score >= policy.min_cvss => {
            reasons.push(format!(
                "CVSS {:.1} ({}) is at least {:.1}",
                cvss.score, cvss.severity, policy.min_cvss
            ));
            true
        }
        (Category::Vulnerability, Some(cvss)) => {
            reasons.push(format!(
                "CVSS {:.1} ({}) is below {:.1}: not a live patch (or file it as data corruption or severe instability)",
                cvss.score, cvss.severity, policy.min_cvss
            ));
            false
        }
        (Category::Vulnerability, None) => {
            reasons.push("no CVSS vector: a vulnerability needs a score".into());
            false
        }
        (exception, _) => {
            let what = match exception {
                Category::DataCorruption => "data corruption",
                _ => "severe instability",
            };
            match facts.exception_justification.map(str::trim) {
                Some(text) if !text.is_empty() => {
                    reasons.push(format!(
                        "{what}: a security officer signed off (\"{}\")",
                        text.chars().take(120).collect::<String>()
                    ));
                    true
                }
                _ if !policy.security_officer_for_exceptions => {
                    reasons.push(format!("{what}: the policy needs no security officer"));
                    true
                }
                _ => {
                    reasons.push(format!(
                        "{what}: waiting for a security officer's sign-off with a justification"
                    ));
                    false
                }
            }
        }
    };
    let analysable = match facts.analysis_problem {
        Some(problem) => {
            reasons.push(format!(
                "the analysis says no complete live patch can be built from this revision: {}",
                problem.chars().take(300).collect::<String>()
            ));
            false
        }
        None => true,
    };
    let in_scope = match facts.functions_to_replace {
        Some(n) if n as u64 > u64::from(policy.scope_limit) => {
            reasons.push(format!(
                "{n} functions to replace: more than the scope limit of {}",
                policy.scope_limit
            ));
            false
        }
        Some(n) => {
            reasons.push(format!(
                "{n} function(s) to replace, within the scope limit of {}",
                policy.scope_limit
            ));
            true
        }
        None => {
            reasons.push("scope not known until the fix is analysed".into());
            true
        }
    };
    Eligibility {
        eligible: by_severity && in_scope && analysable,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn cvss_vectors_of_both_versions_are_scored() {
        // CVE-2024-1086's vector.
        let v3 = score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H").unwrap();
        assert_eq!(
            (v3.version.as_str(), v3.score, v3.severity.as_str()),
            ("3.1", 7.8, "high")
        );
        let v4 = score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N").unwrap();
        assert_eq!(
            (v4.version.as_str(), v4.score, v4.severity.as_str()),
            ("4.0", 9.3, "critical")
        );
        let low = score("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N").unwrap();
        assert!(low.score < 6.0, "{}", low.score);
        for bad in [
            "CVSS:3.1/AV:X/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:L",
            "CVSS:3.1/AV:L/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "AV:N/AC:L/Au:N/C:C/I:C/A:C",
            "CVSS:5.0/AV:N",
            "",
        ] {
            let error = score(bad).unwrap_err().to_string();
            assert!(error.contains("is not a valid CVSS"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_eligibility_rules() {
        let policy = Policy::default();
        let high = score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H").unwrap();
        let low = score("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N").unwrap();
        let vulnerability = |cvss, functions| Facts {
            cvss: Some(cvss),
            category: Some(Category::Vulnerability),
            exception_justification: None,
            functions_to_replace: functions,
            analysis_problem: None,
        };
        assert!(assess(&vulnerability(&high, Some(3)), &policy).eligible);
        assert!(!assess(&vulnerability(&low, Some(3)), &policy).eligible);
        let wide = assess(&vulnerability(&high, Some(31)), &policy);
        assert!(!wide.eligible);
        assert_eq!(
            wide.reasons[1],
            "31 functions to replace: more than the scope limit of 30"
        );
        // An exception: only with the security officer's written justification.
        let mut corruption = Facts {
            cvss: Some(&low),
            category: Some(Category::DataCorruption),
            exception_justification: None,
            functions_to_replace: Some(1),
            analysis_problem: None,
        };
        assert!(!assess(&corruption, &policy).eligible);
        corruption.exception_justification = Some("   ");
        assert!(!assess(&corruption, &policy).eligible);
        corruption.exception_justification = Some("ext4 metadata corruption under load");
        let verdict = assess(&corruption, &policy);
        assert!(verdict.eligible);
        assert!(verdict.reasons[0].starts_with("data corruption: a security officer signed off"));
        let relaxed = Policy {
            security_officer_for_exceptions: false,
            ..Policy::default()
        };
        corruption.exception_justification = None;
        assert!(assess(&corruption, &relaxed).eligible);
        // No vector, no score.
        assert!(!assess(&Facts::default(), &policy).eligible);
    }

    #[test]
    fn deadlines_run_from_the_report() {
        let policy = Policy::default();
        let reported = datetime!(2026-11-27 10:00 UTC);
        assert_eq!(
            policy.deadline(Tier::Incident, reported),
            datetime!(2026-11-28 10:00 UTC)
        );
        assert_eq!(
            policy.deadline(Tier::Emergency, reported),
            datetime!(2026-11-30 10:00 UTC)
        );
        assert_eq!(
            policy.deadline(Tier::Scheduled, reported),
            datetime!(2026-12-27 10:00 UTC)
        );
    }

    #[test]
    fn policy_files_are_checked() {
        assert_eq!(Policy::from_toml("").unwrap(), Policy::default());
        let custom = Policy::from_toml(
            "approvals_required = 3\nscope_limit = 10\n[deadlines]\nincident_hours = 12\n",
        )
        .unwrap();
        assert_eq!(custom.approvals_required, 3);
        assert_eq!(custom.deadlines.incident_hours, 12);
        assert_eq!(custom.deadlines.emergency_hours, 72);
        assert_eq!(custom.audit.online_months, 12);
        let kept = Policy::from_toml("[audit]\nonline_months = 24\n").unwrap();
        assert_eq!(kept.audit.online_months, 24);
        for (text, expected) in [
            (
                "approvals_required = 0",
                "approvals_required must be at least 1",
            ),
            ("min_cvss = 11.0", "is not a CVSS score"),
            ("approval_required = 2", "unknown field"),
            ("approvals_required = \"two\"", "invalid type"),
            ("[deadlines]\nincident_hours = 100", "must not shrink"),
            ("[deadlines]\nscheduled_days = 0", "longer than zero"),
            ("[audit]\nonline_months = 2", "outside 3 to 1200"),
            ("[audit]\nonline_days = 90", "unknown field"),
        ] {
            let error = Policy::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
