//! Filter queries: the subset of WQL and DMTF:CQL (DSP0202) that indication clients send,
//! parsed by a small recursive-descent parser and evaluated against an indication.
//!
//! The subset: `SELECT * FROM <indication class> [WHERE <expr>]`, where `<expr>` combines with
//! `AND`, `OR`, `NOT` and parentheses the predicates `<prop> ISA <class>`,
//! `<operand> <op> <operand>` (`=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`) and `<prop> IS [NOT] NULL`.
//! A `<prop>` is an indication property (`PerceivedSeverity`) or a property of one of its embedded
//! instances (`SourceInstance.CIM_ConcreteJob::PercentComplete`, or in WQL
//! `SourceInstance.PercentComplete`); an operand is a `<prop>` or a string, number or boolean
//! literal.
//!
//! Invariants: a query outside the subset is refused when the filter is created, never ignored
//! (CIM_ERR_NOT_SUPPORTED for valid CQL this subset lacks, CIM_ERR_INVALID_QUERY for text that is
//! no query or names an unknown class or property); parsing is bounded in bytes, tokens and
//! nesting; evaluation is three-valued (a NULL or a class that does not match makes a predicate
//! unknown, and only a true result matches).

use std::cmp::Ordering;

use cairn_cim::{CimError, CimStatus, ClassRepository, Instance, Value};

use crate::limits::{
    INDICATION_QUERY_BYTES_MAX, INDICATION_QUERY_DEPTH_MAX, INDICATION_QUERY_TOKENS_MAX,
};

/// The languages accepted in CIM_IndicationFilter.QueryLanguage.
pub const QUERY_LANGUAGES: [&str; 2] = ["WQL", "DMTF:CQL"];

/// CQL words this subset does not implement: a query using one is refused as not supported.
const UNSUPPORTED_WORDS: [&str; 12] = [
    "LIKE",
    "ANY",
    "EVERY",
    "SATISFIES",
    "IN",
    "ORDER",
    "BY",
    "DISTINCT",
    "FIRST",
    "AS",
    "JOIN",
    "INNER",
];

/// A parsed filter query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The FROM class, as the repository spells it.
    pub from: String,
    predicate: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Isa(PropRef, String),
    Cmp(Operand, CmpOp, Operand),
    IsNull(Operand, bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Lit(Scalar),
    Prop(PropRef),
}

/// `Top` or `Top.[Class::]Inner`.
#[derive(Debug, Clone, PartialEq)]
struct PropRef {
    top: String,
    inner: Option<(Option<String>, String)>,
}

/// A value as comparisons see it.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Int(i128),
    Real(f64),
    Str(String),
    Bool(bool),
    List(Vec<Scalar>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

fn invalid(what: impl std::fmt::Display) -> CimError {
    CimError::new(CimStatus::InvalidQuery, format!("Invalid query: {what}"))
}

fn unsupported(what: impl std::fmt::Display) -> CimError {
    CimError::not_supported(format!("Query feature {what}"))
}

const SYMBOLS: [&str; 13] = [
    "::", "<>", "!=", "<=", ">=", "=", "<", ">", "(", ")", ".", ",", "*",
];

fn tokenize(text: &str) -> Result<Vec<Tok>, CimError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        if out.len() >= INDICATION_QUERY_TOKENS_MAX {
            return Err(invalid(format!(
                "more than {INDICATION_QUERY_TOKENS_MAX} tokens"
            )));
        }
        let (tok, len) = if c == '\'' || c == '"' {
            string_literal(rest, c)?
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let len = 1 + rest[1..]
                .find(|d: char| !(d.is_ascii_digit() || d == '.'))
                .unwrap_or(rest.len() - 1);
            (Tok::Num(rest[..len].to_owned()), len)
        } else if c.is_alphabetic() || c == '_' {
            let len = rest
                .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            (Tok::Word(rest[..len].to_owned()), len)
        } else if let Some(s) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            (Tok::Sym(s), s.len())
        } else {
            return Err(invalid(format!("unexpected character {c:?}")));
        };
        out.push(tok);
        rest = &rest[len..];
    }
}

/// A quoted literal at the start of `s` (quote `q`, doubled to escape it): token and byte length.
fn string_literal(s: &str, q: char) -> Result<(Tok, usize), CimError> {
    let mut value = String::new();
    let mut chars = s.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c != q {
            value.push(c);
        } else if chars.peek().is_some_and(|(_, n)| *n == q) {
            value.push(q);
            chars.next();
        } else {
            return Ok((Tok::Str(value), i + 1));
        }
    }
    Err(invalid("unterminated string literal"))
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    repo: &'a ClassRepository,
    from: String,
}

impl Query {
    /// Parses `text` in `language` (WQL or DMTF:CQL) and checks its names against `repo`.
    pub fn parse(text: &str, language: &str, repo: &ClassRepository) -> Result<Query, CimError> {
        if !QUERY_LANGUAGES
            .iter()
            .any(|l| l.eq_ignore_ascii_case(language.trim()))
        {
            return Err(CimError::not_supported(format!(
                "Query language {language} (WQL and DMTF:CQL are)"
            )));
        }
        if text.len() > INDICATION_QUERY_BYTES_MAX {
            return Err(invalid(format!(
                "longer than {INDICATION_QUERY_BYTES_MAX} bytes"
            )));
        }
        let mut p = Parser {
            toks: tokenize(text)?,
            pos: 0,
            depth: 0,
            repo,
            from: String::new(),
        };
        p.select()
    }

    /// True if `indication` passes the filter: it is of the FROM class (or a subclass) and the
    /// WHERE clause is true for it.
    pub fn matches(&self, indication: &Instance, repo: &ClassRepository) -> bool {
        if !repo.is_subclass_of(&indication.class_name, &self.from) {
            return false;
        }
        match &self.predicate {
            None => true,
            Some(e) => eval(e, indication, repo) == Some(true),
        }
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn at_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.at_word(w);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_word(&mut self, w: &str) -> Result<(), CimError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(invalid(format!("expected {w}")))
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        let yes = matches!(self.peek(), Some(Tok::Sym(x)) if *x == s);
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// A name (not a reserved or unsupported word).
    fn name(&mut self) -> Result<String, CimError> {
        match self.next() {
            Some(Tok::Word(w)) => {
                if let Some(u) = UNSUPPORTED_WORDS
                    .iter()
                    .find(|u| u.eq_ignore_ascii_case(&w))
                {
                    return Err(unsupported(u));
                }
                Ok(w)
            }
            Some(t) => Err(invalid(format!("expected a name, found {t:?}"))),
            None => Err(invalid("unexpected end")),
        }
    }

    fn class(&mut self) -> Result<String, CimError> {
        let name = self.name()?;
        self.repo
            .class(&name)
            .map(|c| c.name.clone())
            .ok_or_else(|| invalid(format!("unknown class {name}")))
    }

    fn select(&mut self) -> Result<Query, CimError> {
        self.expect_word("SELECT")?;
        if !self.eat_sym("*") {
            return Err(unsupported("a select list other than *"));
        }
        self.expect_word("FROM")?;
        self.from = self.class()?;
        if !self.repo.is_subclass_of(&self.from, "CIM_Indication") {
            return Err(invalid(format!("{} is not an indication class", self.from)));
        }
        if self.eat_sym(",") {
            return Err(unsupported("more than one FROM class"));
        }
        let predicate = if self.eat_word("WHERE") {
            Some(self.or()?)
        } else {
            None
        };
        match self.peek() {
            None => Ok(Query {
                from: self.from.clone(),
                predicate,
            }),
            Some(Tok::Word(w)) if UNSUPPORTED_WORDS.iter().any(|u| u.eq_ignore_ascii_case(w)) => {
                Err(unsupported(w))
            }
            Some(t) => Err(invalid(format!("unexpected {t:?}"))),
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, CimError>,
    ) -> Result<T, CimError> {
        self.depth += 1;
        if self.depth > INDICATION_QUERY_DEPTH_MAX {
            return Err(invalid(format!(
                "nested deeper than {INDICATION_QUERY_DEPTH_MAX}"
            )));
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> Result<Expr, CimError> {
        let mut e = self.and()?;
        while self.eat_word("OR") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, CimError> {
        let mut e = self.not()?;
        while self.eat_word("AND") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, CimError> {
        if self.eat_word("NOT") {
            return self.nested(|p| Ok(Expr::Not(Box::new(p.not()?))));
        }
        if self.eat_sym("(") {
            let e = self.nested(|p| p.or())?;
            if !self.eat_sym(")") {
                return Err(invalid("expected )"));
            }
            return Ok(e);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, CimError> {
        let left = self.operand()?;
        if self.eat_word("ISA") {
            let Operand::Prop(p) = left else {
                return Err(invalid("ISA needs a property on its left"));
            };
            if p.inner.is_some() {
                return Err(unsupported("ISA on a property of an embedded instance"));
            }
            return Ok(Expr::Isa(p, self.class()?));
        }
        if self.eat_word("IS") {
            let negated = self.eat_word("NOT");
            self.expect_word("NULL")?;
            return Ok(Expr::IsNull(left, negated));
        }
        let op = match self.next() {
            Some(Tok::Sym("=")) => CmpOp::Eq,
            Some(Tok::Sym("<>")) | Some(Tok::Sym("!=")) => CmpOp::Ne,
            Some(Tok::Sym("<")) => CmpOp::Lt,
            Some(Tok::Sym("<=")) => CmpOp::Le,
            Some(Tok::Sym(">")) => CmpOp::Gt,
            Some(Tok::Sym(">=")) => CmpOp::Ge,
            Some(Tok::Word(w)) if UNSUPPORTED_WORDS.iter().any(|u| u.eq_ignore_ascii_case(&w)) => {
                return Err(unsupported(w))
            }
            other => return Err(invalid(format!("expected a comparison, found {other:?}"))),
        };
        Ok(Expr::Cmp(left, op, self.operand()?))
    }

    fn operand(&mut self) -> Result<Operand, CimError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Operand::Lit(Scalar::Str(s)))
            }
            Some(Tok::Num(n)) => {
                self.pos += 1;
                number(&n).map(Operand::Lit)
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") =>
            {
                self.pos += 1;
                Ok(Operand::Lit(Scalar::Bool(w.eq_ignore_ascii_case("TRUE"))))
            }
            _ => self.property().map(Operand::Prop),
        }
    }

    fn property(&mut self) -> Result<PropRef, CimError> {
        let top = self.name()?;
        let from = self
            .repo
            .class(&self.from)
            .ok_or_else(|| invalid(&self.from))?;
        let decl = from
            .property(&top)
            .ok_or_else(|| invalid(format!("{} has no property {top}", self.from)))?;
        let top = decl.name.clone();
        if !self.eat_sym(".") {
            return Ok(PropRef { top, inner: None });
        }
        let first = self.name()?;
        let inner = if self.eat_sym("::") {
            let class = self
                .repo
                .class(&first)
                .ok_or_else(|| invalid(format!("unknown class {first}")))?;
            let prop = self.name()?;
            if class.property(&prop).is_none() {
                return Err(invalid(format!("{} has no property {prop}", class.name)));
            }
            (Some(class.name.clone()), prop)
        } else {
            (None, first)
        };
        if self.eat_sym(".") {
            return Err(unsupported(
                "properties more than one embedded instance deep",
            ));
        }
        Ok(PropRef {
            top,
            inner: Some(inner),
        })
    }
}

fn number(text: &str) -> Result<Scalar, CimError> {
    if text.contains('.') {
        text.parse::<f64>()
            .map(Scalar::Real)
            .map_err(|_| invalid(format!("bad number {text}")))
    } else {
        text.parse::<i128>()
            .map(Scalar::Int)
            .map_err(|_| invalid(format!("bad number {text}")))
    }
}

/// The value `p` names in `ind`, if set (an embedded instance of another class is NULL).
fn lookup<'a>(p: &PropRef, ind: &'a Instance, repo: &ClassRepository) -> Option<&'a Value> {
    let top = ind.get(&p.top)?;
    let Some((class, prop)) = &p.inner else {
        return Some(top);
    };
    let Value::Instance(inner) = top else {
        return None;
    };
    if class
        .as_ref()
        .is_some_and(|c| !repo.is_subclass_of(&inner.class_name, c))
    {
        return None;
    }
    inner.get(prop)
}

fn scalar(v: &Value) -> Option<Scalar> {
    Some(match v {
        Value::Boolean(b) => Scalar::Bool(*b),
        Value::Real32(x) => Scalar::Real(f64::from(*x)),
        Value::Real64(x) => Scalar::Real(*x),
        Value::Char16(c) => Scalar::Str(c.to_string()),
        Value::String(s) => Scalar::Str(s.clone()),
        Value::DateTime(d) => Scalar::Str(d.as_str().to_owned()),
        Value::Array(_, items) => Scalar::List(items.iter().map(scalar).collect::<Option<_>>()?),
        Value::Reference(_) | Value::Instance(_) => return None,
        int => Scalar::Int(integer(int)?),
    })
}

fn integer(v: &Value) -> Option<i128> {
    Some(match v {
        Value::Uint8(x) => (*x).into(),
        Value::Sint8(x) => (*x).into(),
        Value::Uint16(x) => (*x).into(),
        Value::Sint16(x) => (*x).into(),
        Value::Uint32(x) => (*x).into(),
        Value::Sint32(x) => (*x).into(),
        Value::Uint64(x) => (*x).into(),
        Value::Sint64(x) => (*x).into(),
        _ => return None,
    })
}

fn operand(o: &Operand, ind: &Instance, repo: &ClassRepository) -> Option<Scalar> {
    match o {
        Operand::Lit(s) => Some(s.clone()),
        Operand::Prop(p) => lookup(p, ind, repo).and_then(scalar),
    }
}

fn order(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(y)),
        (Scalar::Int(x), Scalar::Real(y)) => (*x as f64).partial_cmp(y),
        (Scalar::Real(x), Scalar::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Scalar::Real(x), Scalar::Real(y)) => x.partial_cmp(y),
        (Scalar::Str(x), Scalar::Str(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        (Scalar::List(x), Scalar::List(y)) => {
            let same = x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(a, b)| order(a, b) == Some(Ordering::Equal));
            Some(if same {
                Ordering::Equal
            } else {
                Ordering::Less
            })
        }
        _ => None,
    }
}

fn compare(a: &Scalar, op: CmpOp, b: &Scalar) -> Option<bool> {
    let lists = matches!(a, Scalar::List(_)) || matches!(b, Scalar::List(_));
    let o = order(a, b)?;
    Some(match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        _ if lists => return None,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    })
}

fn eval(e: &Expr, ind: &Instance, repo: &ClassRepository) -> Option<bool> {
    match e {
        Expr::Or(a, b) => match (eval(a, ind, repo), eval(b, ind, repo)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::And(a, b) => match (eval(a, ind, repo), eval(b, ind, repo)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Not(a) => eval(a, ind, repo).map(|x| !x),
        Expr::Isa(p, class) => match lookup(p, ind, repo)? {
            Value::Instance(i) => Some(repo.is_subclass_of(&i.class_name, class)),
            _ => Some(false),
        },
        Expr::IsNull(o, negated) => {
            let null = match o {
                Operand::Lit(_) => false,
                Operand::Prop(p) => lookup(p, ind, repo).is_none(),
            };
            Some(null != *negated)
        }
        Expr::Cmp(a, op, b) => compare(&operand(a, ind, repo)?, *op, &operand(b, ind, repo)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_cim::CimType;

    fn repo() -> ClassRepository {
        ClassRepository::embedded()
    }

    fn status(text: &str) -> CimStatus {
        match Query::parse(text, "DMTF:CQL", &repo()) {
            Ok(q) => panic!("{text} parsed as {q:?}"),
            Err(e) => e.status,
        }
    }

    fn job(percent: u16, state: u16) -> Instance {
        Instance::new("Cairn_ConcreteJob")
            .with("PercentComplete", Value::Uint16(percent))
            .with("JobState", Value::Uint16(state))
            .with(
                "OperationalStatus",
                Value::Array(CimType::Uint16, vec![Value::Uint16(2)]),
            )
    }

    fn modification(now: Instance, before: Instance) -> Instance {
        Instance::new("CIM_InstModification")
            .with("SourceInstance", Value::Instance(Box::new(now)))
            .with("PreviousInstance", Value::Instance(Box::new(before)))
    }

    #[test]
    fn class_and_isa_filters_match_only_their_classes() {
        let r = repo();
        let q = Query::parse(
            "SELECT * FROM CIM_InstModification WHERE SourceInstance ISA CIM_ConcreteJob",
            "WQL",
            &r,
        )
        .expect("parse");
        assert!(q.matches(&modification(job(5, 4), job(0, 4)), &r));
        let vol = Instance::new("Cairn_StorageVolume");
        assert!(!q.matches(&modification(vol.clone(), vol.clone()), &r));
        let creation = Instance::new("CIM_InstCreation")
            .with("SourceInstance", Value::Instance(Box::new(job(0, 4))));
        assert!(!q.matches(&creation, &r), "another indication class");
        let all = Query::parse("select * from CIM_InstIndication", "DMTF:CQL", &r).expect("parse");
        assert!(all.matches(&creation, &r));
    }

    #[test]
    fn comparisons_of_the_source_and_previous_instances() {
        let r = repo();
        let q = Query::parse(
            "SELECT * FROM CIM_InstModification WHERE SourceInstance ISA CIM_ConcreteJob AND \
             (SourceInstance.CIM_ConcreteJob::PercentComplete <> PreviousInstance.CIM_ConcreteJob::PercentComplete \
             OR NOT SourceInstance.CIM_ConcreteJob::JobState = 4)",
            "DMTF:CQL",
            &r,
        )
        .expect("parse");
        assert!(q.matches(&modification(job(5, 4), job(0, 4)), &r));
        assert!(!q.matches(&modification(job(5, 4), job(5, 4)), &r));
        assert!(q.matches(&modification(job(5, 7), job(5, 4)), &r));
        let wql = Query::parse(
            "SELECT * FROM CIM_InstModification WHERE SourceInstance.PercentComplete >= 50 AND SourceInstance.OperationalStatus = PreviousInstance.OperationalStatus",
            "WQL",
            &r,
        )
        .expect("parse");
        assert!(wql.matches(&modification(job(50, 4), job(0, 4)), &r));
        assert!(!wql.matches(&modification(job(49, 4), job(0, 4)), &r));
        let null = Query::parse(
            "SELECT * FROM CIM_InstModification WHERE PreviousInstance IS NULL",
            "WQL",
            &r,
        )
        .expect("parse");
        assert!(!null.matches(&modification(job(1, 4), job(0, 4)), &r));
        let named = Query::parse(
            "SELECT * FROM CIM_AlertIndication WHERE PerceivedSeverity > 2 AND Message = 'it''s full'",
            "WQL",
            &r,
        )
        .expect("parse");
        let alert = Instance::new("CIM_AlertIndication")
            .with("PerceivedSeverity", Value::Uint16(6))
            .with("Message", Value::string("it's full"));
        assert!(named.matches(&alert, &r));
    }

    #[test]
    fn queries_outside_the_subset_are_refused() {
        assert_eq!(
            status("SELECT Name FROM CIM_InstCreation"),
            CimStatus::NotSupported
        );
        assert_eq!(
            status("SELECT * FROM CIM_InstCreation WHERE SourceInstance.CIM_StorageVolume::ElementName LIKE 'a%'"),
            CimStatus::NotSupported
        );
        assert_eq!(
            status("SELECT * FROM CIM_StorageVolume"),
            CimStatus::InvalidQuery
        );
        assert_eq!(status("SELECT * FROM Nope_Class"), CimStatus::InvalidQuery);
        assert_eq!(
            status("SELECT * FROM CIM_InstCreation WHERE Bogus = 1"),
            CimStatus::InvalidQuery
        );
        assert_eq!(
            status(
                "SELECT * FROM CIM_InstCreation WHERE SourceInstance.CIM_StorageVolume::Bogus = 1"
            ),
            CimStatus::InvalidQuery
        );
        assert_eq!(
            status("SELECT * FROM CIM_InstCreation WHERE"),
            CimStatus::InvalidQuery
        );
        assert_eq!(
            status("SELECT * FROM CIM_InstCreation WHERE 'a"),
            CimStatus::InvalidQuery
        );
        assert_eq!(
            status("DELETE FROM CIM_InstCreation"),
            CimStatus::InvalidQuery
        );
        let deep = format!(
            "SELECT * FROM CIM_InstCreation WHERE {}1=1{}",
            "(".repeat(40),
            ")".repeat(40)
        );
        assert_eq!(status(&deep), CimStatus::InvalidQuery);
        let err =
            Query::parse("SELECT * FROM CIM_InstCreation", "SQL", &repo()).expect_err("language");
        assert_eq!(err.status, CimStatus::NotSupported);
    }
}
