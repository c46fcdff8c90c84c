//! The request grammar of PostgREST: the query string (`select`, filters, `or`/`and` trees,
//! `order`, `limit`/`offset`, `on_conflict`, `columns`) and the `Prefer` and `Range` headers,
//! parsed into typed values. Nothing here knows the schema: names are checked when the
//! request is planned. Every refusal is a [`ParseError`], answered as PGRST100. The module
//! depends on nothing but the standard library, so the fuzz target (`fuzz/`) builds it alone.

/// Why a parameter does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The parameter or header, when known.
    pub what: String,
    pub details: String,
}

impl ParseError {
    pub fn new(what: &str, details: &str) -> ParseError {
        ParseError { what: what.to_owned(), details: details.to_owned() }
    }

    /// Names the parameter the error happened in.
    pub fn at(mut self, what: &str) -> ParseError {
        if !what.is_empty() {
            self.what = what.to_owned();
        }
        self
    }
}

/// A column, possibly followed by a JSON path (`data->a->>b`, `data->0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub path: Vec<JsonStep>,
}

/// One step of a JSON path: `->` keeps JSON, `->>` gives text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStep {
    pub text: bool,
    pub key: JsonKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

impl Field {
    /// The name PostgREST gives the output column: the last key of the path, else the column.
    pub fn output_name(&self) -> String {
        match self.path.last() {
            Some(JsonStep { key: JsonKey::Key(key), .. }) => key.clone(),
            Some(JsonStep { key: JsonKey::Index(_), .. }) | None => self.name.clone(),
        }
    }
}

/// How an embedded resource joins its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Left,
    Inner,
}

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`: every column.
    Star,
    Column {
        field: Field,
        alias: Option<String>,
        cast: Option<String>,
    },
    /// `alias:relation!hint!inner(items)`, or `...relation(items)` when `spread`.
    Embed {
        alias: Option<String>,
        relation: String,
        hint: Option<String>,
        join: Option<JoinKind>,
        spread: bool,
        items: Vec<SelectItem>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    Cs,
    Cd,
    Ov,
    Sl,
    Sr,
    Nxl,
    Nxr,
    Adj,
}

impl Operator {
    fn from_name(name: &str) -> Option<Operator> {
        Some(match name {
            "eq" => Operator::Eq,
            "neq" => Operator::Neq,
            "gt" => Operator::Gt,
            "gte" => Operator::Gte,
            "lt" => Operator::Lt,
            "lte" => Operator::Lte,
            "like" => Operator::Like,
            "ilike" => Operator::Ilike,
            "match" => Operator::Match,
            "imatch" => Operator::Imatch,
            "cs" => Operator::Cs,
            "cd" => Operator::Cd,
            "ov" => Operator::Ov,
            "sl" => Operator::Sl,
            "sr" => Operator::Sr,
            "nxl" => Operator::Nxl,
            "nxr" => Operator::Nxr,
            "adj" => Operator::Adj,
            _ => return None,
        })
    }

    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Neq => "<>",
            Operator::Gt => ">",
            Operator::Gte => ">=",
            Operator::Lt => "<",
            Operator::Lte => "<=",
            Operator::Like => "LIKE",
            Operator::Ilike => "ILIKE",
            Operator::Match => "~",
            Operator::Imatch => "~*",
            Operator::Cs => "@>",
            Operator::Cd => "<@",
            Operator::Ov => "&&",
            Operator::Sl => "<<",
            Operator::Sr => ">>",
            Operator::Nxl => "&<",
            Operator::Nxr => "&>",
            Operator::Adj => "-|-",
        }
    }

    /// Operators whose value is a pattern (`*` stands for `%`) or a regular expression:
    /// compared as text.
    pub fn is_textual(self) -> bool {
        matches!(self, Operator::Like | Operator::Ilike | Operator::Match | Operator::Imatch)
    }

    /// Operators that take `(any)` or `(all)` with a list of values.
    fn quantifiable(self) -> bool {
        matches!(
            self,
            Operator::Eq
                | Operator::Neq
                | Operator::Gt
                | Operator::Gte
                | Operator::Lt
                | Operator::Lte
                | Operator::Like
                | Operator::Ilike
                | Operator::Match
                | Operator::Imatch
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsKind {
    /// `to_tsquery`
    Fts,
    /// `plainto_tsquery`
    Plain,
    /// `phraseto_tsquery`
    Phrase,
    /// `websearch_to_tsquery`
    Web,
}

impl FtsKind {
    pub fn function(self) -> &'static str {
        match self {
            FtsKind::Fts => "to_tsquery",
            FtsKind::Plain => "plainto_tsquery",
            FtsKind::Phrase => "phraseto_tsquery",
            FtsKind::Web => "websearch_to_tsquery",
        }
    }
}

/// What a filter tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Compare {
        op: Operator,
        value: String,
    },
    /// `eq(any).{a,b}`: the operator against each value of the list.
    Quantified {
        op: Operator,
        quantifier: Quantifier,
        values: Vec<String>,
    },
    In(Vec<String>),
    Is(IsValue),
    IsDistinct(String),
    Fts {
        kind: FtsKind,
        config: Option<String>,
        query: String,
    },
}

/// `column=[not.]operator.value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub field: Field,
    pub negated: bool,
    pub operation: Operation,
}

/// A filter, or an `and(...)`/`or(...)` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logic {
    Filter(Filter),
    Tree { or: bool, negated: bool, children: Vec<Logic> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub field: Field,
    pub descending: bool,
    pub nulls: Option<Nulls>,
}

/// The path of an embedded resource a parameter applies to (`actors.order=` has
/// `["actors"]`); empty for the resource of the URL.
pub type EmbedPath = Vec<String>;

/// Everything the query string says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub select: Option<Vec<SelectItem>>,
    /// Filters and logic trees, each with the embedded resource it applies to.
    pub filters: Vec<(EmbedPath, Logic)>,
    pub order: Vec<(EmbedPath, Vec<OrderTerm>)>,
    pub limits: Vec<(EmbedPath, u64)>,
    pub offsets: Vec<(EmbedPath, u64)>,
    pub on_conflict: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
}

impl Query {
    pub fn limit(&self, path: &[String]) -> Option<u64> {
        self.limits.iter().find(|(p, _)| p == path).map(|(_, n)| *n)
    }

    pub fn offset(&self, path: &[String]) -> Option<u64> {
        self.offsets.iter().find(|(p, _)| p == path).map(|(_, n)| *n)
    }
}

/// Splits a raw query string into decoded `(key, value)` pairs (`+` is a space, as in forms).
pub fn pairs(raw: &str) -> Result<Vec<(String, String)>, ParseError> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(byte.ok_or_else(|| ParseError::new("query string", "a % not followed by two hex digits"))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ParseError::new("query string", "it is not UTF-8"))
}

/// Parses the decoded query parameters of a request.
pub fn query(pairs: &[(String, String)]) -> Result<Query, ParseError> {
    let mut query = Query::default();
    for (key, value) in pairs {
        if key.contains('\0') || value.contains('\0') {
            return Err(ParseError::new(key, "NUL characters are not allowed"));
        }
        let (path, last) = split_key(key);
        match last {
            "select" if path.is_empty() => {
                if query.select.is_some() {
                    return Err(ParseError::new("select", "select is given twice"));
                }
                query.select = Some(select(value)?);
            }
            "order" => query.order.push((path, order(value)?)),
            "limit" => query.limits.push((path, number("limit", value)?)),
            "offset" => query.offsets.push((path, number("offset", value)?)),
            "on_conflict" if path.is_empty() => query.on_conflict = Some(names("on_conflict", value)?),
            "columns" if path.is_empty() => query.columns = Some(names("columns", value)?),
            "or" | "and" => {
                let tree = logic_tree(last == "or", false, value).map_err(|e| e.at(key))?;
                query.filters.push((path, tree));
            }
            "not.or" | "not.and" => {
                let tree = logic_tree(last == "not.or", true, value).map_err(|e| e.at(key))?;
                query.filters.push((path, tree));
            }
            _ => {
                let filter = filter(field(last)?, value).map_err(|e| e.at(key))?;
                query.filters.push((path, Logic::Filter(filter)));
            }
        }
    }
    Ok(query)
}

/// `a.b.col` is `col` on the embedded resource `a.b`; `not.or` and `not.and` are one name.
fn split_key(key: &str) -> (EmbedPath, &str) {
    for logic in ["not.or", "not.and"] {
        if let Some(prefix) = key.strip_suffix(logic)
            && (prefix.is_empty() || prefix.ends_with('.'))
        {
            let path = prefix.trim_end_matches('.');
            let path = if path.is_empty() { Vec::new() } else { path.split('.').map(str::to_owned).collect() };
            return (path, &key[prefix.len()..]);
        }
    }
    // JSON path keys may hold dots only after an arrow; the embed path ends before it.
    let head_end = key.find("->").unwrap_or(key.len());
    match key[..head_end].rfind('.') {
        Some(dot) => (key[..dot].split('.').map(str::to_owned).collect(), &key[dot + 1..]),
        None => (Vec::new(), key),
    }
}

fn number(name: &str, value: &str) -> Result<u64, ParseError> {
    value.trim().parse().map_err(|_| ParseError::new(name, &format!("{value:?} is not a non-negative integer")))
}

/// A comma-separated list of column names, each possibly double-quoted (`"a","b"`).
fn names(what: &str, value: &str) -> Result<Vec<String>, ParseError> {
    let mut cursor = Cursor::new(value);
    let mut names = Vec::new();
    loop {
        cursor.skip_spaces();
        names.push(cursor.name().map_err(|e| e.at(what))?);
        cursor.skip_spaces();
        if cursor.eat(',') {
            continue;
        }
        if cursor.done() {
            return Ok(names);
        }
        return Err(cursor.unexpected().at(what));
    }
}

/// Parses `select=`.
pub fn select(value: &str) -> Result<Vec<SelectItem>, ParseError> {
    let mut cursor = Cursor::new(value);
    let items = select_items(&mut cursor).map_err(|e| e.at("select"))?;
    if !cursor.done() {
        return Err(cursor.unexpected().at("select"));
    }
    Ok(items)
}

fn select_items(cursor: &mut Cursor) -> Result<Vec<SelectItem>, ParseError> {
    let mut items = Vec::new();
    loop {
        cursor.skip_spaces();
        if cursor.peek().is_none() || cursor.peek() == Some(')') {
            // `select=` and `rel()` select nothing of their own.
            if items.is_empty() {
                return Ok(items);
            }
            return Err(cursor.unexpected());
        }
        items.push(select_item(cursor)?);
        cursor.skip_spaces();
        if !cursor.eat(',') {
            return Ok(items);
        }
    }
}

fn select_item(cursor: &mut Cursor) -> Result<SelectItem, ParseError> {
    if cursor.eat('*') {
        return Ok(SelectItem::Star);
    }
    let spread = cursor.eat_str("...");
    let first = cursor.name()?;
    let (alias, name) = if !spread && cursor.peek() == Some(':') && cursor.peek_at(1) != Some(':') {
        cursor.eat(':');
        (Some(first), cursor.name()?)
    } else {
        (None, first)
    };
    // An embedded resource: hints, join type, then its own items in parentheses.
    if matches!(cursor.peek(), Some('!' | '(')) {
        let mut hint = None;
        let mut join = None;
        while cursor.eat('!') {
            let word = cursor.name()?;
            match word.as_str() {
                "inner" if join.is_none() => join = Some(JoinKind::Inner),
                "left" if join.is_none() => join = Some(JoinKind::Left),
                _ if hint.is_none() => hint = Some(word),
                _ => return Err(ParseError::new("select", &format!("unexpected hint {word:?}"))),
            }
        }
        if !cursor.eat('(') {
            return Err(cursor.unexpected());
        }
        let items = select_items(cursor)?;
        if !cursor.eat(')') {
            return Err(cursor.unexpected());
        }
        return Ok(SelectItem::Embed { alias, relation: name, hint, join, spread, items });
    }
    if spread {
        return Err(ParseError::new("select", "only an embedded resource can be spread (`...rel(cols)`)"));
    }
    if cursor.peek() == Some('.') {
        return Err(ParseError::new("select", "aggregate functions are not enabled (PostgREST's default)"));
    }
    let path = json_path(cursor)?;
    let cast = if cursor.eat_str("::") { Some(cast_type(cursor)?) } else { None };
    Ok(SelectItem::Column { field: Field { name, path }, alias, cast })
}

/// A type name in a cast: letters, digits, `_` and spaces (`double precision`), optionally
/// `[]`. Rendered as written, so nothing else may pass.
fn cast_type(cursor: &mut Cursor) -> Result<String, ParseError> {
    let mut name = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ');
    if cursor.eat_str("[]") {
        name.push_str("[]");
    }
    let trimmed = name.trim();
    if trimmed.is_empty() || !trimmed.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        return Err(ParseError::new("select", "a cast needs a type name"));
    }
    Ok(trimmed.to_owned())
}

fn json_path(cursor: &mut Cursor) -> Result<Vec<JsonStep>, ParseError> {
    let mut path = Vec::new();
    loop {
        let text = if cursor.eat_str("->>") {
            true
        } else if cursor.eat_str("->") {
            false
        } else {
            return Ok(path);
        };
        // An array index is a signed integer followed by the end, an arrow, a cast or a
        // separator; anything else is a key.
        let start = cursor.at;
        let sign = if cursor.eat('-') { "-" } else { "" };
        let digits = cursor.take_while(|c| c.is_ascii_digit());
        let ends =
            cursor.done() || cursor.rest().starts_with("->") || matches!(cursor.peek(), Some(':' | '.' | ',' | ')'));
        let key = match format!("{sign}{digits}").parse::<i64>() {
            Ok(index) if !digits.is_empty() && ends => JsonKey::Index(index),
            _ => {
                cursor.at = start;
                JsonKey::Key(cursor.name()?)
            }
        };
        path.push(JsonStep { text, key });
    }
}

/// A field name with its JSON path, as it appears in a filter key or an order term.
pub fn field(text: &str) -> Result<Field, ParseError> {
    let mut cursor = Cursor::new(text);
    let name = cursor.name()?;
    let path = json_path(&mut cursor)?;
    if !cursor.done() {
        return Err(cursor.unexpected().at(text));
    }
    Ok(Field { name, path })
}

/// `[not.]op.value` for `field`.
pub fn filter(field: Field, value: &str) -> Result<Filter, ParseError> {
    let (negated, rest) = match value.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (op, operand) =
        rest.split_once('.').ok_or_else(|| ParseError::new("filter", &format!("{value:?} has no operator")))?;
    Ok(Filter { field, negated, operation: operation(op, operand)? })
}

fn operation(op: &str, operand: &str) -> Result<Operation, ParseError> {
    // Full-text search: `fts`, `fts(config)`, and its plain/phrase/web forms.
    let (name, argument) = match op.split_once('(') {
        Some((name, rest)) => {
            let argument =
                rest.strip_suffix(')').ok_or_else(|| ParseError::new("filter", &format!("unclosed ( in {op:?}")))?;
            (name, Some(argument))
        }
        None => (op, None),
    };
    let fts = match name {
        "fts" => Some(FtsKind::Fts),
        "plfts" => Some(FtsKind::Plain),
        "phfts" => Some(FtsKind::Phrase),
        "wfts" => Some(FtsKind::Web),
        _ => None,
    };
    if let Some(kind) = fts {
        return Ok(Operation::Fts { kind, config: argument.map(str::to_owned), query: operand.to_owned() });
    }
    match (name, argument) {
        ("in", None) => Ok(Operation::In(list(operand, '(', ')')?)),
        ("is", None) => Ok(Operation::Is(match operand.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            _ => {
                return Err(ParseError::new(
                    "filter",
                    &format!("is takes null, not_null, true, false or unknown, not {operand:?}"),
                ));
            }
        })),
        ("isdistinct", None) => Ok(Operation::IsDistinct(operand.to_owned())),
        (name, argument) => {
            let op = Operator::from_name(name)
                .ok_or_else(|| ParseError::new("filter", &format!("unknown operator {name:?}")))?;
            match argument {
                None => Ok(Operation::Compare { op, value: operand.to_owned() }),
                Some(q) if op.quantifiable() => {
                    let quantifier = match q {
                        "any" => Quantifier::Any,
                        "all" => Quantifier::All,
                        _ => {
                            return Err(ParseError::new("filter", &format!("{name}({q}) is neither (any) nor (all)")));
                        }
                    };
                    Ok(Operation::Quantified { op, quantifier, values: list(operand, '{', '}')? })
                }
                Some(_) => Err(ParseError::new("filter", &format!("{name} takes no (any) or (all)"))),
            }
        }
    }
}

/// `(a,"b,c",d)`: values separated by commas; a value in double quotes may hold commas,
/// parentheses and `\"`.
fn list(text: &str, open: char, close: char) -> Result<Vec<String>, ParseError> {
    let inner = text
        .strip_prefix(open)
        .and_then(|t| t.strip_suffix(close))
        .ok_or_else(|| ParseError::new("filter", &format!("a list must be written {open}a,b{close}")))?;
    let mut cursor = Cursor::new(inner);
    let mut values = Vec::new();
    if inner.trim().is_empty() {
        return Ok(values);
    }
    loop {
        let value = if cursor.peek() == Some('"') { cursor.quoted()? } else { cursor.take_while(|c| c != ',') };
        values.push(value);
        if cursor.done() {
            return Ok(values);
        }
        if !cursor.eat(',') {
            return Err(cursor.unexpected());
        }
    }
}

/// `(a.eq.1,or(b.gt.2,c.is.null),not.and(...))`.
fn logic_tree(or: bool, negated: bool, value: &str) -> Result<Logic, ParseError> {
    let mut cursor = Cursor::new(value);
    let tree = logic_children(&mut cursor, or, negated)?;
    if !cursor.done() {
        return Err(cursor.unexpected());
    }
    Ok(tree)
}

fn logic_children(cursor: &mut Cursor, or: bool, negated: bool) -> Result<Logic, ParseError> {
    if !cursor.eat('(') {
        return Err(ParseError::new("logic", "a logic tree must be written (filter,filter,...)"));
    }
    let mut children = Vec::new();
    loop {
        cursor.skip_spaces();
        children.push(logic_item(cursor)?);
        cursor.skip_spaces();
        if cursor.eat(',') {
            continue;
        }
        if cursor.eat(')') {
            return Ok(Logic::Tree { or, negated, children });
        }
        return Err(cursor.unexpected());
    }
}

fn logic_item(cursor: &mut Cursor) -> Result<Logic, ParseError> {
    for (prefix, or, negated) in
        [("not.or(", true, true), ("not.and(", false, true), ("or(", true, false), ("and(", false, false)]
    {
        if cursor.rest().starts_with(prefix) {
            cursor.advance(prefix.len() - 1);
            return logic_children(cursor, or, negated);
        }
    }
    // `field.[not.]op.value`, the value running to the next `,` or `)` outside quotes and
    // outside the parentheses or braces of a list.
    let name = cursor.name()?;
    let path = json_path(cursor)?;
    if !cursor.eat('.') {
        return Err(cursor.unexpected());
    }
    let mut text = String::new();
    let mut depth = 0usize;
    while let Some(c) = cursor.peek() {
        match c {
            '"' => {
                let quoted = cursor.quoted()?;
                // Inside a list the quotes stay (the list parser reads them); a plain
                // value loses them.
                if depth > 0 {
                    text.push('"');
                    text.push_str(&quoted.replace('\\', "\\\\").replace('"', "\\\""));
                    text.push('"');
                } else {
                    text.push_str(&quoted);
                }
                continue;
            }
            '(' | '{' => depth += 1,
            ')' | '}' if depth > 0 => depth -= 1,
            ',' | ')' if depth == 0 => break,
            _ => {}
        }
        text.push(c);
        cursor.advance(c.len_utf8());
    }
    Ok(Logic::Filter(filter(Field { name, path }, &text)?))
}

/// Parses `order=`.
pub fn order(value: &str) -> Result<Vec<OrderTerm>, ParseError> {
    let mut terms = Vec::new();
    for term in split_top_level(value) {
        let mut cursor = Cursor::new(term.trim());
        let name = cursor.name().map_err(|e| e.at("order"))?;
        let path = json_path(&mut cursor).map_err(|e| e.at("order"))?;
        let mut term = OrderTerm { field: Field { name, path }, descending: false, nulls: None };
        while cursor.eat('.') {
            match cursor.take_while(|c| c != '.').as_str() {
                "asc" => term.descending = false,
                "desc" => term.descending = true,
                "nullsfirst" => term.nulls = Some(Nulls::First),
                "nullslast" => term.nulls = Some(Nulls::Last),
                other => return Err(ParseError::new("order", &format!("unexpected {other:?}"))),
            }
        }
        if !cursor.done() {
            return Err(cursor.unexpected().at("order"));
        }
        terms.push(term);
    }
    Ok(terms)
}

/// Splits on commas outside double quotes.
fn split_top_level(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// `Prefer` header values PostgREST understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    pub return_: Option<Return>,
    pub count: Option<Count>,
    pub resolution: Option<Resolution>,
    pub missing_default: bool,
    pub strict: bool,
    pub rollback: bool,
    pub max_affected: Option<u64>,
    /// Preferences not understood (an error under `handling=strict`).
    pub invalid: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    HeadersOnly,
    Representation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

impl Preferences {
    /// Reads every `Prefer` header value (comma-separated `key=value` tokens); the first
    /// value given for a preference wins.
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> Preferences {
        let mut prefs = Preferences::default();
        let mut seen: Vec<&str> = Vec::new();
        for token in values.flat_map(|v| v.split(',')).map(str::trim).filter(|t| !t.is_empty()) {
            let key = token.split('=').next().unwrap_or(token);
            if seen.contains(&key) {
                continue;
            }
            let known = match token {
                "return=minimal" => {
                    prefs.return_ = Some(Return::Minimal);
                    true
                }
                "return=headers-only" => {
                    prefs.return_ = Some(Return::HeadersOnly);
                    true
                }
                "return=representation" => {
                    prefs.return_ = Some(Return::Representation);
                    true
                }
                "count=exact" => {
                    prefs.count = Some(Count::Exact);
                    true
                }
                "count=planned" => {
                    prefs.count = Some(Count::Planned);
                    true
                }
                "count=estimated" => {
                    prefs.count = Some(Count::Estimated);
                    true
                }
                "resolution=merge-duplicates" => {
                    prefs.resolution = Some(Resolution::MergeDuplicates);
                    true
                }
                "resolution=ignore-duplicates" => {
                    prefs.resolution = Some(Resolution::IgnoreDuplicates);
                    true
                }
                "missing=default" => {
                    prefs.missing_default = true;
                    true
                }
                "missing=null" => {
                    prefs.missing_default = false;
                    true
                }
                "handling=strict" => {
                    prefs.strict = true;
                    true
                }
                "handling=lenient" => {
                    prefs.strict = false;
                    true
                }
                "tx=rollback" => {
                    prefs.rollback = true;
                    true
                }
                "tx=commit" => {
                    prefs.rollback = false;
                    true
                }
                other => match other.strip_prefix("max-affected=").map(str::parse) {
                    Some(Ok(n)) => {
                        prefs.max_affected = Some(n);
                        true
                    }
                    _ => false,
                },
            };
            if known {
                seen.push(key);
            } else {
                prefs.invalid.push(token.to_owned());
            }
        }
        prefs
    }
}

/// `Range: 0-9` (items, inclusive), as an offset and an optional limit; `None` when the
/// header is not a range or its lower bound exceeds its upper one.
pub fn range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("items=").unwrap_or(value.trim());
    let (from, to) = spec.split_once('-')?;
    let from: u64 = from.trim().parse().ok()?;
    if to.trim().is_empty() {
        return Some((from, None));
    }
    let to: u64 = to.trim().parse().ok()?;
    (to >= from).then(|| (from, Some(to - from + 1)))
}

/// A character cursor over one parameter value.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn advance(&mut self, bytes: usize) {
        self.at = (self.at + bytes).min(self.text.len());
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.advance(c.len_utf8());
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.advance(s.len());
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.advance(c.len_utf8());
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while let Some(c) = self.peek().filter(|&c| keep(c)) {
            self.advance(c.len_utf8());
        }
        self.text[start..self.at].to_owned()
    }

    /// A name: double-quoted (any characters, `""` or `\"` for a quote), or a run of
    /// characters other than the grammar's punctuation.
    fn name(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            let name = self.quoted()?;
            if name.is_empty() {
                return Err(ParseError::new("name", "an empty quoted name"));
            }
            return Ok(name);
        }
        let mut name = String::new();
        while let Some(c) = self.peek() {
            // A single `-` may be part of a name; `->` starts a JSON path.
            if matches!(c, ',' | '.' | ':' | '(' | ')' | '!' | '"' | '*' | '>')
                || c.is_whitespace()
                || self.rest().starts_with("->")
            {
                break;
            }
            name.push(c);
            self.advance(c.len_utf8());
        }
        if name.is_empty() {
            return Err(self.unexpected());
        }
        Ok(name)
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        if !self.eat('"') {
            return Err(self.unexpected());
        }
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ParseError::new("value", "an unclosed double quote")),
                Some('\\') => {
                    self.advance(1);
                    let c = self.peek().ok_or_else(|| ParseError::new("value", "a trailing backslash"))?;
                    out.push(c);
                    self.advance(c.len_utf8());
                }
                Some('"') => {
                    self.advance(1);
                    if self.eat('"') {
                        out.push('"');
                        continue;
                    }
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.advance(c.len_utf8());
                }
            }
        }
    }

    fn unexpected(&self) -> ParseError {
        match self.peek() {
            Some(c) => ParseError::new(
                "",
                &format!("unexpected {c:?} at character {}", self.text[..self.at].chars().count() + 1),
            ),
            None => ParseError::new("", "unexpected end of input"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> SelectItem {
        SelectItem::Column { field: Field { name: name.into(), path: vec![] }, alias: None, cast: None }
    }

    fn f(name: &str) -> Field {
        Field { name: name.into(), path: vec![] }
    }

    fn parsed(qs: &str) -> Query {
        query(&pairs(qs).expect("pairs")).expect("query")
    }

    fn only_filter(qs: &str) -> Logic {
        let q = parsed(qs);
        assert_eq!(q.filters.len(), 1, "{qs}");
        q.filters[0].1.clone()
    }

    fn compare(field: &str, op: Operator, value: &str) -> Logic {
        Logic::Filter(Filter {
            field: f(field),
            negated: false,
            operation: Operation::Compare { op, value: value.into() },
        })
    }

    /// Examples from PostgREST's documentation, with the parsed form each must give.
    #[test]
    fn documented_select_examples() {
        assert_eq!(select("*").expect("p"), vec![SelectItem::Star]);
        assert_eq!(select("first_name,age").expect("p"), vec![col("first_name"), col("age")]);
        assert_eq!(
            select("fullName:full_name,birthDate:birth_date").expect("p")[0],
            SelectItem::Column { field: f("full_name"), alias: Some("fullName".into()), cast: None }
        );
        assert_eq!(
            select("full_name,salary::text").expect("p")[1],
            SelectItem::Column { field: f("salary"), alias: None, cast: Some("text".into()) }
        );
        let json = select("id,json_data->>blood_type,json_data->phones->0->number").expect("p");
        assert_eq!(
            json[1],
            SelectItem::Column {
                field: Field {
                    name: "json_data".into(),
                    path: vec![JsonStep { text: true, key: JsonKey::Key("blood_type".into()) }]
                },
                alias: None,
                cast: None
            }
        );
        let SelectItem::Column { field, .. } = &json[2] else { panic!("column") };
        assert_eq!(field.path.len(), 3);
        assert_eq!(field.path[1].key, JsonKey::Index(0));
        assert_eq!(field.output_name(), "number");
        let embed = select("title,directors(id,last_name)").expect("p");
        assert_eq!(
            embed[1],
            SelectItem::Embed {
                alias: None,
                relation: "directors".into(),
                hint: None,
                join: None,
                spread: false,
                items: vec![col("id"), col("last_name")]
            }
        );
        let hinted = select("*,central_addresses:addresses!billing_address_id!inner(*)").expect("p");
        assert_eq!(
            hinted[1],
            SelectItem::Embed {
                alias: Some("central_addresses".into()),
                relation: "addresses".into(),
                hint: Some("billing_address_id".into()),
                join: Some(JoinKind::Inner),
                spread: false,
                items: vec![SelectItem::Star]
            }
        );
        let spread = select("title,...directors(director_last_name:last_name)").expect("p");
        assert!(matches!(&spread[1], SelectItem::Embed { spread: true, items, .. } if items.len() == 1));
        let nested = select("name,films(title,roles(character,actors(first_name)))").expect("p");
        assert!(matches!(&nested[1], SelectItem::Embed { items, .. } if matches!(&items[1], SelectItem::Embed { .. })));
        assert_eq!(select("\"my col\",x").expect("p")[0], col("my col"));
        assert_eq!(select("").expect("p"), vec![]);
        // Found by the fuzzer: whitespace of more than one byte.
        assert!(select("a,\u{85}b").is_ok());
    }

    #[test]
    fn documented_filter_examples() {
        assert_eq!(only_filter("age=gte.18"), compare("age", Operator::Gte, "18"));
        assert_eq!(only_filter("last_name=like.O*"), compare("last_name", Operator::Like, "O*"));
        assert_eq!(
            only_filter("age=not.eq.18"),
            Logic::Filter(Filter {
                field: f("age"),
                negated: true,
                operation: Operation::Compare { op: Operator::Eq, value: "18".into() }
            })
        );
        assert_eq!(
            only_filter("id=in.(1,2,3)"),
            Logic::Filter(Filter {
                field: f("id"),
                negated: false,
                operation: Operation::In(vec!["1".into(), "2".into(), "3".into()])
            })
        );
        assert_eq!(
            only_filter("name=in.(\"Hi,there\",\"yes\")"),
            Logic::Filter(Filter {
                field: f("name"),
                negated: false,
                operation: Operation::In(vec!["Hi,there".into(), "yes".into()])
            })
        );
        assert_eq!(
            only_filter("last_name=like(any).{O*,P*}"),
            Logic::Filter(Filter {
                field: f("last_name"),
                negated: false,
                operation: Operation::Quantified {
                    op: Operator::Like,
                    quantifier: Quantifier::Any,
                    values: vec!["O*".into(), "P*".into()]
                }
            })
        );
        assert_eq!(
            only_filter("my_tsv=fts(french).amusant"),
            Logic::Filter(Filter {
                field: f("my_tsv"),
                negated: false,
                operation: Operation::Fts {
                    kind: FtsKind::Fts,
                    config: Some("french".into()),
                    query: "amusant".into()
                }
            })
        );
        assert_eq!(
            only_filter("my_tsv=not.phfts(english).The+Fat+Cats"),
            Logic::Filter(Filter {
                field: f("my_tsv"),
                negated: true,
                operation: Operation::Fts {
                    kind: FtsKind::Phrase,
                    config: Some("english".into()),
                    query: "The Fat Cats".into()
                }
            })
        );
        assert_eq!(
            only_filter("is_active=is.null"),
            Logic::Filter(Filter { field: f("is_active"), negated: false, operation: Operation::Is(IsValue::Null) })
        );
        assert_eq!(only_filter("tags=cs.{example,new}"), compare("tags", Operator::Cs, "{example,new}"));
        assert_eq!(only_filter("range=adj.(1,10)"), compare("range", Operator::Adj, "(1,10)"));
        // A plain value is taken as written: quotes and all.
        assert_eq!(only_filter("name=eq.\"a,b\""), compare("name", Operator::Eq, "\"a,b\""));
        let q = parsed("json_data->>blood_type=eq.A-");
        let Logic::Filter(filter) = &q.filters[0].1 else { panic!("filter") };
        assert_eq!(filter.field.path, vec![JsonStep { text: true, key: JsonKey::Key("blood_type".into()) }]);
    }

    #[test]
    fn documented_logic_trees() {
        let tree = only_filter("or=(age.lt.18,age.gt.21)");
        assert_eq!(
            tree,
            Logic::Tree {
                or: true,
                negated: false,
                children: vec![compare("age", Operator::Lt, "18"), compare("age", Operator::Gt, "21")]
            }
        );
        let nested = only_filter("and=(grade.gte.90,student.is.true,or(age.eq.14,not.and(age.gte.11,age.lte.17)))");
        let Logic::Tree { or: false, children, .. } = nested else { panic!("and") };
        assert_eq!(children.len(), 3);
        let Logic::Tree { or: true, children: inner, .. } = &children[2] else { panic!("or") };
        assert!(matches!(&inner[1], Logic::Tree { or: false, negated: true, children } if children.len() == 2));
        let quoted = only_filter("or=(name.eq.\"a,b\",id.in.(1,\"2,3\"))");
        let Logic::Tree { children, .. } = quoted else { panic!("tree") };
        assert_eq!(children[0], compare("name", Operator::Eq, "a,b"));
        assert_eq!(
            children[1],
            Logic::Filter(Filter {
                field: f("id"),
                negated: false,
                operation: Operation::In(vec!["1".into(), "2,3".into()])
            })
        );
        let q = parsed("not.or=(a.eq.1,b.eq.2)&actors.or=(x.eq.1)");
        assert!(matches!(&q.filters[0].1, Logic::Tree { negated: true, or: true, .. }));
        assert_eq!(q.filters[1].0, vec!["actors".to_owned()]);
    }

    #[test]
    fn order_limits_and_embedded_parameters() {
        let q = parsed(
            "order=age.desc,height.asc.nullslast&limit=15&offset=30&actors.order=last_name&actors.limit=2&films.actors.offset=1",
        );
        assert_eq!(
            q.order[0].1,
            vec![
                OrderTerm { field: f("age"), descending: true, nulls: None },
                OrderTerm { field: f("height"), descending: false, nulls: Some(Nulls::Last) }
            ]
        );
        assert_eq!(q.limit(&[]), Some(15));
        assert_eq!(q.offset(&[]), Some(30));
        assert_eq!(q.order[1].0, vec!["actors".to_owned()]);
        assert_eq!(q.limit(&["actors".to_owned()]), Some(2));
        assert_eq!(q.offset(&["films".to_owned(), "actors".to_owned()]), Some(1));
        let q = parsed("columns=%22a%22,%22b%22&on_conflict=a");
        assert_eq!(q.columns, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(q.on_conflict, Some(vec!["a".to_owned()]));
    }

    #[test]
    fn bad_input_is_pgrst100() {
        for qs in [
            "select=a(",
            "select=a,,b",
            "select=x::",
            "select=a::text;drop",
            "select=...a",
            "select=a.sum()",
            "id=zz.1",
            "id=eq",
            "id=in.1,2",
            "id=is.maybe",
            "or=(a.eq.1",
            "or=a.eq.1",
            "order=a.sideways",
            "limit=-1",
            "limit=ten",
            "id=eq.%zz",
            "id=eq.%ff",
            "id=like(some).{a}",
            "select=\"unclosed",
        ] {
            let result = pairs(qs).and_then(|p| query(&p));
            let error = result.expect_err(qs);
            assert!(!error.details.is_empty(), "{qs}: {error:?}");
        }
    }

    #[test]
    fn preferences_first_value_wins_and_unknown_ones_are_listed() {
        let p = Preferences::parse(
            ["return=representation, count=exact", "return=minimal,tx=rollback,foo=bar"].into_iter(),
        );
        assert_eq!(p.return_, Some(Return::Representation));
        assert_eq!(p.count, Some(Count::Exact));
        assert!(p.rollback);
        assert_eq!(p.invalid, vec!["foo=bar".to_owned()]);
        let p = Preferences::parse(["handling=strict, max-affected=5"].into_iter());
        assert!(p.strict);
        assert_eq!(p.max_affected, Some(5));
    }

    #[test]
    fn ranges_are_inclusive() {
        assert_eq!(range("0-9"), Some((0, Some(10))));
        assert_eq!(range("items=5-"), Some((5, None)));
        assert_eq!(range("5-4"), None);
        assert_eq!(range("a-b"), None);
    }
}
