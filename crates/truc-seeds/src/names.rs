//! Agency names across the reports: normalisation, the few hand-made aliases, and code assignment.
//!
//! The reports spell the same body differently ("UBND Tỉnh Kon Tum", "Tỉnh KonTum",
//! "UBND Kon Tum"); every table is matched to the directory through [`name_key`], and the
//! handful of spellings that no rule can reconcile go through [`ALIASES`].

use crate::{AgencyKind, AgencyRow, SeedError};

/// How a printed name was matched to its directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchRule {
    /// Printed exactly as the directory name.
    Exact,
    /// Equal after [`name_key`] (case, "UBND"/"Tỉnh"/"Thành phố"/"TP." prefixes,
    /// punctuation, the word "và", spaces, old-style tone placement).
    Normalized,
    /// Equal only through an entry of [`ALIASES`].
    Alias,
}

impl MatchRule {
    /// The word written into `agencies.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchRule::Exact => "exact",
            MatchRule::Normalized => "normalized",
            MatchRule::Alias => "alias",
        }
    }
}

/// Spellings no general rule reconciles: (key of the printed form, key of the directory name).
///
/// Seed 001 prints the Party Central Office as plain "Văn phòng Trung ương" (it is the only
/// "central office" the 2019 report lists); seed 002 writes "TP.HCM" for Ho Chi Minh City.
pub const ALIASES: &[(&str, &str)] = &[
    ("vănphòngtrungương", "vănphòngtrungươngđảng"),
    ("hcm", "hồchíminh"),
];

/// Directory names that replace the printed one because the printed one is truncated.
pub const CANONICAL_NAME_OVERRIDES: &[(&str, &str)] =
    &[("Văn phòng Trung ương", "Văn phòng Trung ương Đảng")];

/// Prefixes that name the administration rather than the body; stripped repeatedly.
const PREFIXES: &[&str] = &["ubnd", "ủy ban nhân dân", "tỉnh", "thành phố", "tp.", "tp"];

/// Old-style tone placement ("Hoà", "Uỷ") folded onto the placement the tables mostly use;
/// only at the end of a syllable, since "ngoại" is the standard spelling.
const TONE_FOLDS: &[(&str, &str)] = &[
    ("oà", "òa"),
    ("oá", "óa"),
    ("oả", "ỏa"),
    ("oã", "õa"),
    ("oạ", "ọa"),
    ("uỳ", "ùy"),
    ("uý", "úy"),
    ("uỷ", "ủy"),
    ("uỹ", "ũy"),
    ("uỵ", "ụy"),
];

/// The comparison key of a printed agency name.
pub fn name_key(printed: &str) -> String {
    let lowered = printed.trim().to_lowercase();
    let mut text = lowered
        .split(' ')
        .map(|word| {
            TONE_FOLDS
                .iter()
                .find_map(|(old, new)| word.strip_suffix(old).map(|stem| format!("{stem}{new}")))
                .unwrap_or_else(|| word.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ");
    // Strip administrative prefixes, one after another ("UBND Tỉnh ...", "UBND Thành phố ...").
    loop {
        let before = text.len();
        for prefix in PREFIXES {
            if let Some(rest) = text.strip_prefix(prefix) {
                // Only strip a whole word: "tp.hcm" loses "tp.", "tphcm" would not exist.
                if prefix.ends_with('.') || rest.starts_with(' ') {
                    text = rest.trim_start().to_string();
                    break;
                }
            }
        }
        if text.len() == before {
            break;
        }
    }
    let spaced: String = text
        .chars()
        .map(|c| {
            if matches!(c, '-' | ',' | '&' | '.' | '–') {
                ' '
            } else {
                c
            }
        })
        .collect();
    spaced
        .split_whitespace()
        .filter(|word| *word != "và")
        .collect::<Vec<_>>()
        .concat()
}

/// Central bodies in code order: `000.00.00.G01` .. `000.00.00.G41`, by the key of the name
/// seed 001 prints. The 22 ministries and ministry-level agencies come first in alphabetical
/// order, which reproduces the four codes DOMAIN.md gives (G09 Home Affairs, G12 Finance,
/// G17 Construction, G22 Government Office); the rest are assigned.
pub const CENTRAL_ORDER: [&str; 41] = [
    "bộcôngan",
    "bộcôngthương",
    "bộgiáodụcđàotạo",
    "bộgiaothôngvậntải",
    "bộkếhoạchđầutư",
    "bộkhoahọccôngnghệ",
    "bộlaođộngthươngbinhxãhội",
    "bộngoạigiao",
    "bộnộivụ",
    "bộnôngnghiệppháttriểnnôngthôn",
    "bộquốcphòng",
    "bộtàichính",
    "bộtàinguyênmôitrường",
    "bộthôngtintruyềnthông",
    "bộtưpháp",
    "bộvănhóathểthaodulịch",
    "bộxâydựng",
    "bộytế",
    "ngânhàngnhànướcviệtnam",
    "thanhtrachínhphủ",
    "ủybandântộc",
    "vănphòngchínhphủ",
    "bảohiểmxãhộiviệtnam",
    "banquảnlýlăngchủtịchhồchíminh",
    "đàitiếngnóiviệtnam",
    "đàitruyềnhìnhviệtnam",
    "họcviệnchínhtrịquốcgiahồchíminh",
    "thôngtấnxãviệtnam",
    "ủybanquảnlývốnnhànướctạidoanhnghiệp",
    "việnhànlâmkhoahọccôngnghệviệtnam",
    "việnhànlâmkhoahọcxãhộiviệtnam",
    "đạihọcquốcgiahànội",
    "vănphòngtrungươngđảng",
    "vănphòngquốchội",
    "vănphòngchủtịchnước",
    "tòaánnhândân",
    "việnkiểmsátnhândântốicao",
    "kiểmtoánnhànước",
    "hộiliênhiệpphụnữviệtnam",
    "liênminhhợptácxãviệtnam",
    "tổngliênđoànlaođộngviệtnam",
];

/// Provinces in code order: `000.00.00.H01` .. `000.00.00.H63`, Vietnamese alphabetical order
/// of the 63 provinces, which reproduces DOMAIN.md's `000.00.00.H41` for Nghệ An.
pub const PROVINCE_ORDER: [&str; 63] = [
    "angiang",
    "bàrịavũngtàu",
    "bạcliêu",
    "bắcgiang",
    "bắckạn",
    "bắcninh",
    "bếntre",
    "bìnhdương",
    "bìnhđịnh",
    "bìnhphước",
    "bìnhthuận",
    "càmau",
    "caobằng",
    "cầnthơ",
    "đànẵng",
    "đắklắk",
    "đắknông",
    "điệnbiên",
    "đồngnai",
    "đồngtháp",
    "gialai",
    "hàgiang",
    "hànam",
    "hànội",
    "hàtĩnh",
    "hảidương",
    "hảiphòng",
    "hậugiang",
    "hòabình",
    "hồchíminh",
    "hưngyên",
    "khánhhòa",
    "kiêngiang",
    "kontum",
    "laichâu",
    "lạngsơn",
    "làocai",
    "lâmđồng",
    "longan",
    "namđịnh",
    "nghệan",
    "ninhbình",
    "ninhthuận",
    "phúthọ",
    "phúyên",
    "quảngbình",
    "quảngnam",
    "quảngngãi",
    "quảngninh",
    "quảngtrị",
    "sóctrăng",
    "sơnla",
    "tâyninh",
    "tháibình",
    "tháinguyên",
    "thanhhóa",
    "thừathiênhuế",
    "tiềngiang",
    "tràvinh",
    "tuyênquang",
    "vĩnhlong",
    "vĩnhphúc",
    "yênbái",
];

/// The code assigned to a body printed in seed 001, Phụ lục 6, III.
pub fn assigned_code(kind: AgencyKind, printed: &str) -> Option<String> {
    let key = name_key(&canonical_name(printed));
    let (letter, order): (char, &[&str]) = match kind {
        AgencyKind::Central => ('G', &CENTRAL_ORDER),
        AgencyKind::Province => ('H', &PROVINCE_ORDER),
    };
    let index = order.iter().position(|entry| *entry == key)?;
    Some(format!("000.00.00.{letter}{:02}", index + 1))
}

/// The directory name for a printed seed 001 name (overrides truncated spellings).
pub fn canonical_name(printed: &str) -> String {
    let printed = printed.trim();
    CANONICAL_NAME_OVERRIDES
        .iter()
        .find(|(from, _)| *from == printed)
        .map_or_else(|| printed.to_string(), |(_, to)| (*to).to_string())
}

/// Resolves printed names to directory codes.
#[derive(Debug, Clone)]
pub struct Directory {
    entries: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone)]
struct DirectoryEntry {
    code: String,
    name: String,
    key: String,
}

impl Directory {
    /// A directory from (code, directory name) pairs.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let entries = entries
            .into_iter()
            .map(|(code, name)| DirectoryEntry {
                code: code.to_string(),
                name: name.to_string(),
                key: name_key(name),
            })
            .collect();
        Directory { entries }
    }

    /// The directory of `agencies.csv` rows.
    pub fn from_agencies(agencies: &[AgencyRow]) -> Self {
        Directory::new(
            agencies
                .iter()
                .map(|row| (row.code.as_str(), row.name.as_str())),
        )
    }

    /// The code of a printed name and the rule that matched it.
    pub fn resolve(
        &self,
        printed: &str,
        source_file: &str,
        line: u32,
    ) -> Result<(String, MatchRule), SeedError> {
        let printed = printed.trim();
        if let Some(entry) = self.entries.iter().find(|entry| entry.name == printed) {
            return Ok((entry.code.clone(), MatchRule::Exact));
        }
        let key = name_key(printed);
        let alias = ALIASES
            .iter()
            .find(|(from, _)| *from == key)
            .map(|(_, to)| *to);
        let attempts = [
            (Some(key.as_str()), MatchRule::Normalized),
            (alias, MatchRule::Alias),
        ];
        let mut candidates = 0;
        for (wanted, rule) in attempts {
            let Some(wanted) = wanted else { continue };
            let found: Vec<&DirectoryEntry> = self
                .entries
                .iter()
                .filter(|entry| entry.key == wanted)
                .collect();
            if let [entry] = found.as_slice() {
                return Ok((entry.code.clone(), rule));
            }
            candidates = candidates.max(found.len());
        }
        Err(SeedError::UnknownAgency {
            name: printed.to_string(),
            source_file: source_file.to_string(),
            line,
            candidates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reconcile_the_spellings_the_reports_use() {
        let same = [
            ("UBND Tỉnh Kon Tum", "Tỉnh KonTum"),
            ("UBND Bà Rịa - Vũng tàu", "Tỉnh Bà Rịa - Vũng Tàu"),
            (
                "Bộ Văn hóa-Thể thao-Du lịch",
                "Bộ Văn hóa - Thể thao và Du lịch",
            ),
            (
                "Bộ Văn hóa, Thể thao và Du lịch",
                "Bộ Văn hóa - Thể thao và Du lịch",
            ),
            ("Bộ Kế hoạch và Đầu tư", "Bộ Kế hoạch Đầu tư"),
            ("Tỉnh Thừa Thiên - Huế", "Tỉnh Thừa Thiên Huế"),
            ("UBND Thành phố Hà Nội", "Thành phố Hà Nội"),
            ("Khánh Hoà", "Tỉnh Khánh Hòa"),
            ("Uỷ ban Dân tộc", "Ủy ban Dân tộc"),
            ("ngân hàng nhà nước Việt Nam", "Ngân hàng Nhà nước Việt Nam"),
        ];
        for (left, right) in same {
            assert_eq!(name_key(left), name_key(right), "{left} vs {right}");
        }
        assert_eq!(name_key("UBND TP.HCM"), "hcm");
        assert_eq!(name_key("Bộ Ngoại giao"), "bộngoạigiao");
    }

    #[test]
    fn assignment_reproduces_the_codes_domain_md_gives() {
        let known = [
            (AgencyKind::Central, "Văn phòng Chính phủ", "000.00.00.G22"),
            (AgencyKind::Central, "Bộ Tài chính", "000.00.00.G12"),
            (AgencyKind::Central, "Bộ Xây dựng", "000.00.00.G17"),
            (AgencyKind::Central, "Bộ Nội vụ", "000.00.00.G09"),
            (AgencyKind::Province, "Tỉnh Nghệ An", "000.00.00.H41"),
        ];
        for (kind, name, code) in known {
            assert_eq!(assigned_code(kind, name).as_deref(), Some(code), "{name}");
        }
    }
}
