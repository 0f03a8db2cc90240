//! Go's `text/template`, as the *template* plugin's `answer`, `additional` and `authority`
//! lines need it.
//!
//! Why written here and not taken from crates.io: the one Rust implementation of Go templates,
//! `gtmpl` (and its fork `go-template`), has had no release since 2021, builds its data from
//! `HashMap`-based values (a deep copy of the data for every render), reports errors without
//! Go's `template: NAME:LINE:COL:` positions, and does not expose the parse tree's string form,
//! which CoreDNS uses as the `template` label of its failure metrics. What CoreDNS users write is
//! a small, stable language, so it is parsed here once at setup into a tree ([`parse`]) and
//! evaluated per query ([`Template::execute`]) against borrowed data, without re-parsing.
//!
//! Supported: text and actions with trim markers, comments, pipelines, `$` variables (declare,
//! assign, scoping), fields and chains, `if`/`else if`/`else`, `range` (with `else`, `break`,
//! `continue`, two variables, integers), `with`/`else with`, `define`/`template`/`block`, and the
//! builtins `and call eq ge gt html index js le len lt ne not or print printf println slice
//! urlquery`, plus CoreDNS's `parseInt` (Go's `strconv.ParseUint`). Complex numbers are not.

mod format;
mod parse;

use std::borrow::Cow;
use std::collections::HashMap;

pub use parse::ParseError;
use parse::{Arg, Branch, Cmd, Node, Pipe};

/// Every function a template may call: Go's builtins and the one CoreDNS adds.
pub const FUNCS: &[&str] = &[
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery", "parseInt",
];

/// How deep `{{template}}` calls may nest. Go allows 100000; a Rust thread's stack does not,
/// so the limit is lower (a template recursing this deep is a mistake either way).
const MAX_DEPTH: usize = 100;
/// Upper bounds on one rendering, so a mistaken `range` cannot stall a server thread: the
/// output of a resource record is far smaller than either.
const MAX_OUTPUT: usize = 64 * 1024;
const MAX_ITERATIONS: usize = 100_000;

/// A parsed template, ready to be executed any number of times.
#[derive(Debug)]
pub struct Template {
    name: String,
    src: String,
    root: Vec<Node>,
    defs: HashMap<String, Vec<Node>>,
    tree: String,
}

impl Template {
    /// Parse `src` as the template called `name` (`answer`, `additional`, `authority`).
    pub fn parse(name: &str, src: &str) -> Result<Self, ParseError> {
        let parsed = parse::parse(name, src)?;
        let mut tree = String::new();
        parse::list_string(&parsed.root, &mut tree);
        Ok(Template {
            name: name.to_string(),
            src: src.to_string(),
            root: parsed.root,
            defs: parsed.defs,
            tree,
        })
    }

    /// The template as Go prints its parse tree (`Tree.Root.String()`): actions normalized,
    /// comments and trim markers gone.
    pub fn tree_string(&self) -> &str {
        &self.tree
    }

    /// Render with `dot` as the data, appending to `out`.
    pub fn execute<'a>(&self, dot: &Value<'a>, out: &mut String) -> Result<(), ExecError> {
        let mut ex = Exec {
            tmpl: self,
            out,
            vars: vec![("$", dot.clone())],
            depth: 0,
            iterations: 0,
            current: &self.name,
        };
        ex.walk(dot, &self.root).map(|_| ())
    }
}

/// A failed execution, formatted as Go formats it:
/// `template: answer:1:26: executing "answer" at <index .Match 2>: error calling index: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError(pub String);

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an [`Object`] is to the template language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Fields by name (and methods).
    Struct,
    /// `map[string]T`: keys as fields, `index`, `range` in key order.
    Map,
    /// `[]T`: `index`, `len`, `range`.
    Slice,
}

/// Structured data a template can look into: the plugin's query data, the question, the
/// message, the regex matches.
pub trait Object {
    /// Go's type name, for error messages (`*template.templateData`).
    fn type_name(&self) -> &'static str;
    fn kind(&self) -> Kind;
    /// A struct field, or for a map the value under that key (`None`: no such field/key).
    fn field(&self, name: &str) -> Option<Value<'_>>;
    /// Call a method; `None` when there is no method of that name.
    fn method(&self, _name: &str, _args: &[Value<'_>]) -> Option<Result<Value<'_>, String>> {
        None
    }
    /// Length of a slice or map.
    fn len(&self) -> usize {
        0
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` of a slice (`i < len()`).
    fn index(&self, _i: usize) -> Value<'_> {
        Value::Invalid
    }
    /// The keys of a map, sorted as Go's `range` and `fmt` sort them.
    fn keys(&self) -> Vec<Cow<'_, str>> {
        Vec::new()
    }
    /// The zero value of a map's elements (what `index` gives for a missing key).
    fn zero(&self) -> Value<'static> {
        Value::Str(Cow::Borrowed(""))
    }
    /// How `fmt` prints it (`%v`). Slices and maps have a default.
    fn write(&self, out: &mut String) {
        match self.kind() {
            Kind::Slice => {
                out.push('[');
                for i in 0..self.len() {
                    if i > 0 {
                        out.push(' ');
                    }
                    format::write_value(&self.index(i), out);
                }
                out.push(']');
            }
            Kind::Map => {
                out.push_str("map[");
                for (i, k) in self.keys().iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    format::write_value(&self.field(k).unwrap_or(Value::Invalid), out);
                }
                out.push(']');
            }
            Kind::Struct => out.push_str("{}"),
        }
    }
}

/// A value during execution. Data is borrowed from the query (`'a`); what the template computes
/// is owned.
#[derive(Clone)]
pub enum Value<'a> {
    /// Go's invalid `reflect.Value`: a missing map key. Prints as `<no value>`.
    Invalid,
    Nil,
    Bool(bool),
    Int(i64),
    /// An unsigned integer and its Go type (`uint64`, `uint16`, `uint8`).
    Uint(u64, &'static str),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Value<'a>>),
    Object(&'a dyn Object),
}

impl std::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        format::write_value(self, &mut s);
        write!(f, "{}({s})", self.type_name())
    }
}

impl<'a> Value<'a> {
    pub fn str(s: &'a str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }

    /// Go's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Invalid => "<invalid>",
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Uint(_, t) => t,
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Object(o) => o.type_name(),
        }
    }

    /// Go's `truth`: what `if`, `with`, `and`, `or` and `not` test.
    pub fn truth(&self) -> bool {
        match self {
            Value::Invalid | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Uint(u, _) => *u != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Object(o) => o.kind() == Kind::Struct || !o.is_empty(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'t, 'a, 'o> {
    tmpl: &'t Template,
    out: &'o mut String,
    vars: Vec<(&'t str, Value<'a>)>,
    depth: usize,
    iterations: usize,
    current: &'t str,
}

type EResult<T> = Result<T, ExecError>;

/// What a function call failed with: Go prefixes errors returned by the function itself with
/// `error calling NAME: `, but not argument-count errors.
enum FnError {
    Call(String),
    Plain(String),
}

type FResult<'a> = Result<Value<'a>, FnError>;

fn call_err<T>(msg: impl Into<String>) -> Result<T, FnError> {
    Err(FnError::Call(msg.into()))
}

impl<'t: 'a, 'a, 'o> Exec<'t, 'a, 'o> {
    fn error_at(&self, pos: usize, context: &str, msg: impl std::fmt::Display) -> ExecError {
        let src = &self.tmpl.src;
        let pos = pos.min(src.len());
        let line = 1 + src[..pos].matches('\n').count();
        let col = match src[..pos].rfind('\n') {
            Some(nl) => pos - nl - 1,
            None => pos,
        };
        let context = if context.chars().count() > 20 {
            format!("{}...", context.chars().take(20).collect::<String>())
        } else {
            context.to_string()
        };
        ExecError(format!(
            "template: {}:{line}:{col}: executing {:?} at <{context}>: {msg}",
            self.tmpl.name, self.current
        ))
    }

    fn cmd_error(&self, cmd: &Cmd, msg: impl std::fmt::Display) -> ExecError {
        let mut ctx = String::new();
        parse::cmd_string(cmd, &mut ctx);
        self.error_at(cmd.pos, &ctx, msg)
    }

    fn arg_error(&self, arg: &Arg, msg: impl std::fmt::Display) -> ExecError {
        let mut ctx = String::new();
        parse::arg_string(arg, &mut ctx);
        self.error_at(arg.pos(), &ctx, msg)
    }

    fn write(&mut self, pos: usize, v: &Value<'a>) -> EResult<()> {
        match v {
            Value::Invalid => self.out.push_str("<no value>"),
            v => format::write_value(v, self.out),
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(self.error_at(pos, "", "template output exceeds 65536 bytes"));
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value<'a>, nodes: &'t [Node]) -> EResult<Flow> {
        for node in nodes {
            match node {
                Node::Text(t) => {
                    self.out.push_str(t);
                    if self.out.len() > MAX_OUTPUT {
                        return Err(self.error_at(0, "", "template output exceeds 65536 bytes"));
                    }
                }
                Node::Action(pipe) => {
                    let v = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.write(pipe.pos, &v)?;
                    }
                }
                Node::If(b) => {
                    let flow = self.if_or_with(dot, b, false)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(b) => {
                    let flow = self.if_or_with(dot, b, true)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(dot, b)?,
                Node::Template {
                    pos, name, pipe, ..
                } => {
                    let Some(body) = self.tmpl.defs.get(name) else {
                        let mut ctx = String::new();
                        parse::list_string(std::slice::from_ref(node), &mut ctx);
                        return Err(self.error_at(
                            *pos,
                            &ctx,
                            format!("no such template {name:?}"),
                        ));
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(self.error_at(
                            *pos,
                            "",
                            format!("exceeded maximum template depth ({MAX_DEPTH})"),
                        ));
                    }
                    let new_dot = match pipe {
                        Some(p) => self.pipeline(dot, p)?,
                        None => Value::Nil,
                    };
                    let saved_vars =
                        std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
                    let saved_name = std::mem::replace(&mut self.current, name.as_str());
                    self.depth += 1;
                    let r = self.walk(&new_dot, body);
                    self.depth -= 1;
                    self.current = saved_name;
                    self.vars = saved_vars;
                    r?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn if_or_with(&mut self, dot: &Value<'a>, b: &'t Branch, with: bool) -> EResult<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let r = if v.truth() {
            if with {
                self.walk(&v, &b.list)
            } else {
                self.walk(dot, &b.list)
            }
        } else if let Some(e) = &b.else_list {
            self.walk(dot, e)
        } else {
            Ok(Flow::Normal)
        };
        self.vars.truncate(mark);
        r
    }

    fn range(&mut self, dot: &Value<'a>, b: &'t Branch) -> EResult<()> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let inner = self.vars.len();
        let decls = b.pipe.decl.len();
        let mut ran = false;
        let items: Vec<(Value<'a>, Value<'a>)> = match &v {
            Value::Int(n) => {
                if decls > 1 {
                    return Err(self.error_at(
                        b.pos,
                        "",
                        format!("can't use {n} to iterate over more than one variable"),
                    ));
                }
                let n = (*n).max(0) as usize;
                if n > MAX_ITERATIONS {
                    return Err(self.error_at(b.pos, "", "range exceeds 100000 iterations"));
                }
                (0..n as i64)
                    .map(|i| (Value::Int(i), Value::Int(i)))
                    .collect()
            }
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                .collect(),
            Value::Object(o) => match o.kind() {
                Kind::Slice => (0..o.len())
                    .map(|i| (Value::Int(i as i64), o.index(i)))
                    .collect(),
                Kind::Map => o
                    .keys()
                    .into_iter()
                    .map(|k| {
                        let val = o.field(&k).unwrap_or(Value::Invalid);
                        (Value::Str(Cow::Owned(k.into_owned())), val)
                    })
                    .collect(),
                Kind::Struct => {
                    return Err(self.error_at(
                        b.pos,
                        "",
                        format!("range can't iterate over {}", o.type_name()),
                    ));
                }
            },
            Value::Invalid | Value::Nil => Vec::new(),
            other => {
                let mut s = String::new();
                format::write_value(other, &mut s);
                return Err(self.error_at(b.pos, "", format!("range can't iterate over {s}")));
            }
        };
        for (index, elem) in items {
            ran = true;
            self.iterations += 1;
            if self.iterations > MAX_ITERATIONS {
                return Err(self.error_at(b.pos, "", "range exceeds 100000 iterations"));
            }
            // The declared variables sit just below `inner`: "$e" alone, or "$i, $e".
            if decls > 0 {
                if b.pipe.is_assign {
                    if decls > 1 {
                        self.set_var(&b.pipe.decl[0], index.clone());
                        self.set_var(&b.pipe.decl[1], elem.clone());
                    } else {
                        self.set_var(&b.pipe.decl[0], elem.clone());
                    }
                } else {
                    self.vars[inner - 1].1 = elem.clone();
                    if decls > 1 {
                        self.vars[inner - 2].1 = index.clone();
                    }
                }
            }
            let flow = self.walk(&elem, &b.list);
            self.vars.truncate(inner);
            match flow? {
                Flow::Break => break,
                Flow::Continue | Flow::Normal => {}
            }
        }
        if !ran && let Some(e) = &b.else_list {
            self.walk(dot, e)?;
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set_var(&mut self, name: &str, v: Value<'a>) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            slot.1 = v;
        }
    }

    fn var(&self, name: &str) -> Option<&Value<'a>> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    fn pipeline(&mut self, dot: &Value<'a>, pipe: &'t Pipe) -> EResult<Value<'a>> {
        let mut val: Option<Value<'a>> = None;
        for cmd in &pipe.cmds {
            val = Some(self.command(dot, cmd, val)?);
        }
        let val = val.unwrap_or(Value::Invalid);
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, val.clone());
            } else {
                self.vars.push((name.as_str(), val.clone()));
            }
        }
        Ok(val)
    }

    fn not_a_function(&self, cmd: &Cmd, final_: &Option<Value<'a>>) -> EResult<()> {
        if cmd.args.len() > 1 || final_.is_some() {
            let mut s = String::new();
            parse::arg_string(&cmd.args[0], &mut s);
            return Err(self.cmd_error(cmd, format!("can't give argument to non-function {s}")));
        }
        Ok(())
    }

    fn command(
        &mut self,
        dot: &Value<'a>,
        cmd: &'t Cmd,
        final_: Option<Value<'a>>,
    ) -> EResult<Value<'a>> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { idents, .. } => {
                self.field_chain(dot, dot.clone(), cmd, idents, &cmd.args, final_)
            }
            Arg::Chain { node, fields, .. } => {
                let recv = self.arg(dot, node)?;
                self.field_chain(dot, recv, cmd, fields, &cmd.args, final_)
            }
            Arg::Ident { name, .. } => self.function(dot, name, cmd, &cmd.args, final_),
            Arg::Pipe(p) => {
                self.not_a_function(cmd, &final_)?;
                self.pipeline(dot, p)
            }
            Arg::Variable { name, idents, .. } => {
                let Some(v) = self.var(name).cloned() else {
                    return Err(self.cmd_error(cmd, format!("undefined variable: {name}")));
                };
                if idents.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return Ok(v);
                }
                self.field_chain(dot, v, cmd, idents, &cmd.args, final_)
            }
            Arg::Nil(_) => Err(self.cmd_error(cmd, "nil is not a command")),
            Arg::Bool(_, b) => {
                self.not_a_function(cmd, &final_)?;
                Ok(Value::Bool(*b))
            }
            Arg::Dot(_) => {
                self.not_a_function(cmd, &final_)?;
                Ok(dot.clone())
            }
            Arg::Number(_, n) => {
                self.not_a_function(cmd, &final_)?;
                self.ideal(first, n)
            }
            Arg::Str { value, .. } => {
                self.not_a_function(cmd, &final_)?;
                Ok(Value::Str(Cow::Borrowed(value.as_str())))
            }
        }
    }

    /// An untyped constant standing alone: int if it is one, float if written as one.
    fn ideal(&self, arg: &Arg, n: &parse::Number) -> EResult<Value<'a>> {
        let t = n.text.to_ascii_lowercase();
        let floaty = !n.is_int_literal
            && !t.starts_with("0x")
            && !t.starts_with("-0x")
            && !t.starts_with('\'')
            && t.contains(['.', 'e', 'p']);
        if floaty && let Some(f) = n.float {
            return Ok(Value::Float(f));
        }
        if let Some(i) = n.int {
            return Ok(Value::Int(i));
        }
        if n.uint.is_some() {
            return Err(self.arg_error(arg, format!("{} overflows int", n.text)));
        }
        match n.float {
            Some(f) => Ok(Value::Float(f)),
            None => Err(self.arg_error(arg, format!("illegal number syntax: {:?}", n.text))),
        }
    }

    /// The value of an argument (not the first word of a command).
    fn arg(&mut self, dot: &Value<'a>, arg: &'t Arg) -> EResult<Value<'a>> {
        match arg {
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Ok(Value::Nil),
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Number(_, n) => self.ideal(arg, n),
            Arg::Str { value, .. } => Ok(Value::Str(Cow::Borrowed(value.as_str()))),
            Arg::Field { idents, .. } => self.field_chain_plain(dot, dot.clone(), arg, idents),
            Arg::Variable { name, idents, .. } => {
                let Some(v) = self.var(name).cloned() else {
                    return Err(self.arg_error(arg, format!("undefined variable: {name}")));
                };
                if idents.is_empty() {
                    return Ok(v);
                }
                self.field_chain_plain(dot, v, arg, idents)
            }
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let v = self.pipeline(dot, p);
                self.vars.truncate(mark);
                v
            }
            Arg::Chain { node, fields, .. } => {
                let recv = self.arg(dot, node)?;
                self.field_chain_plain(dot, recv, arg, fields)
            }
            Arg::Ident { name, .. } => {
                // A function named as an argument is called with no arguments.
                let r = match name.as_str() {
                    "and" | "or" => Err(FnError::Plain(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    ))),
                    _ => builtin(name, Vec::new()),
                };
                match r {
                    Ok(v) => Ok(v),
                    Err(FnError::Call(m)) => {
                        Err(self.arg_error(arg, format!("error calling {name}: {m}")))
                    }
                    Err(FnError::Plain(m)) => Err(self.arg_error(arg, m)),
                }
            }
        }
    }

    /// `.A.B` used as an argument: no method arguments.
    fn field_chain_plain(
        &mut self,
        dot: &Value<'a>,
        mut recv: Value<'a>,
        arg: &Arg,
        idents: &[String],
    ) -> EResult<Value<'a>> {
        for id in idents {
            recv = self
                .field(recv, id, &[])
                .map_err(|m| self.arg_error(arg, m))?;
        }
        let _ = dot;
        Ok(recv)
    }

    fn field_chain(
        &mut self,
        dot: &Value<'a>,
        mut recv: Value<'a>,
        cmd: &'t Cmd,
        idents: &[String],
        args: &'t [Arg],
        final_: Option<Value<'a>>,
    ) -> EResult<Value<'a>> {
        let n = idents.len();
        for id in &idents[..n - 1] {
            recv = self
                .field(recv, id, &[])
                .map_err(|m| self.cmd_error(cmd, m))?;
        }
        let last = &idents[n - 1];
        let has_args = args.len() > 1 || final_.is_some();
        if !has_args {
            return self
                .field(recv, last, &[])
                .map_err(|m| self.cmd_error(cmd, m));
        }
        // Method arguments: the rest of the command, then the piped value.
        let mut vals = Vec::with_capacity(args.len());
        for a in &args[1..] {
            vals.push(self.arg(dot, a)?);
        }
        if let Some(f) = final_ {
            vals.push(f);
        }
        match &recv {
            Value::Object(o) => {
                if let Some(r) = o.method(last, &vals) {
                    return r
                        .map_err(|m| self.cmd_error(cmd, format!("error calling {last}: {m}")));
                }
                match o.kind() {
                    Kind::Map => {
                        Err(self
                            .cmd_error(cmd, format!("{last} is not a method but has arguments")))
                    }
                    _ if o.field(last).is_some() => Err(self.cmd_error(
                        cmd,
                        format!("{last} has arguments but cannot be invoked as function"),
                    )),
                    _ => Err(self.cmd_error(
                        cmd,
                        format!("can't evaluate field {last} in type {}", o.type_name()),
                    )),
                }
            }
            other => Err(self.cmd_error(
                cmd,
                format!("can't evaluate field {last} in type {}", other.type_name()),
            )),
        }
    }

    /// One field step with no arguments.
    fn field(&self, recv: Value<'a>, name: &str, _args: &[Value<'a>]) -> Result<Value<'a>, String> {
        match recv {
            Value::Invalid => Ok(Value::Invalid),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            Value::Object(o) => {
                if let Some(r) = o.method(name, &[]) {
                    return r;
                }
                match (o.kind(), o.field(name)) {
                    (Kind::Map, v) => Ok(v.unwrap_or(Value::Invalid)),
                    (_, Some(v)) => Ok(v),
                    (_, None) => Err(format!(
                        "can't evaluate field {name} in type {}",
                        o.type_name()
                    )),
                }
            }
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }

    fn function(
        &mut self,
        dot: &Value<'a>,
        name: &str,
        cmd: &'t Cmd,
        args: &'t [Arg],
        final_: Option<Value<'a>>,
    ) -> EResult<Value<'a>> {
        let r = match name {
            // `and` and `or` evaluate their arguments only as far as needed.
            "and" | "or" => {
                let want_true = name == "or";
                let total = args.len() - 1 + usize::from(final_.is_some());
                if total == 0 {
                    return Err(self.cmd_error(
                        cmd,
                        format!("wrong number of args for {name}: want at least 1 got 0"),
                    ));
                }
                let mut last = Value::Invalid;
                for a in &args[1..] {
                    last = self.arg(dot, a)?;
                    if last.truth() == want_true {
                        return Ok(last);
                    }
                }
                if let Some(f) = final_ {
                    last = f;
                }
                return Ok(last);
            }
            _ => {
                let mut vals = Vec::with_capacity(args.len());
                for a in &args[1..] {
                    vals.push(self.arg(dot, a)?);
                }
                if let Some(f) = final_ {
                    vals.push(f);
                }
                builtin(name, vals)
            }
        };
        match r {
            Ok(v) => Ok(v),
            Err(FnError::Call(m)) => Err(self.cmd_error(cmd, format!("error calling {name}: {m}"))),
            Err(FnError::Plain(m)) => Err(self.cmd_error(cmd, m)),
        }
    }
}

fn arity<'a>(name: &str, vals: &[Value<'a>], want: usize) -> Result<(), FnError> {
    if vals.len() != want {
        return Err(FnError::Plain(format!(
            "wrong number of args for {name}: want {want} got {}",
            vals.len()
        )));
    }
    Ok(())
}

fn at_least<'a>(name: &str, vals: &[Value<'a>], want: usize) -> Result<(), FnError> {
    if vals.len() < want {
        return Err(FnError::Plain(format!(
            "wrong number of args for {name}: want at least {want} got {}",
            vals.len()
        )));
    }
    Ok(())
}

fn builtin<'a>(name: &str, mut vals: Vec<Value<'a>>) -> FResult<'a> {
    match name {
        "not" => {
            arity(name, &vals, 1)?;
            Ok(Value::Bool(!vals[0].truth()))
        }
        "len" => {
            arity(name, &vals, 1)?;
            match &vals[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::List(l) => Ok(Value::Int(l.len() as i64)),
                Value::Object(o) if o.kind() != Kind::Struct => Ok(Value::Int(o.len() as i64)),
                Value::Invalid | Value::Nil => call_err("len of nil pointer"),
                other => call_err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => {
            at_least(name, &vals, 1)?;
            let mut item = vals.remove(0);
            for idx in vals {
                item = index_one(item, &idx)?;
            }
            Ok(item)
        }
        "slice" => {
            at_least(name, &vals, 1)?;
            let item = vals.remove(0);
            slice(item, &vals)
        }
        "eq" => {
            at_least(name, &vals, 1)?;
            if vals.len() < 2 {
                return call_err("missing argument for comparison");
            }
            let first = &vals[0];
            for other in &vals[1..] {
                if equal(first, other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            arity(name, &vals, 2)?;
            Ok(Value::Bool(!equal(&vals[0], &vals[1])?))
        }
        "lt" => {
            arity(name, &vals, 2)?;
            Ok(Value::Bool(less(&vals[0], &vals[1])?))
        }
        "le" => {
            arity(name, &vals, 2)?;
            Ok(Value::Bool(
                less(&vals[0], &vals[1])? || equal(&vals[0], &vals[1])?,
            ))
        }
        "gt" => {
            arity(name, &vals, 2)?;
            Ok(Value::Bool(
                !(less(&vals[0], &vals[1])? || equal(&vals[0], &vals[1])?),
            ))
        }
        "ge" => {
            arity(name, &vals, 2)?;
            Ok(Value::Bool(!less(&vals[0], &vals[1])?))
        }
        "print" => Ok(Value::Str(Cow::Owned(format::sprint(&vals)))),
        "println" => Ok(Value::Str(Cow::Owned(format::sprintln(&vals)))),
        "printf" => {
            at_least(name, &vals, 1)?;
            let Value::Str(f) = &vals[0] else {
                return Err(FnError::Plain(format!(
                    "wrong type for value; expected string; got {}",
                    vals[0].type_name()
                )));
            };
            Ok(Value::Str(Cow::Owned(format::sprintf(f, &vals[1..]))))
        }
        "html" => Ok(Value::Str(Cow::Owned(format::html_escape(&eval_args(
            &vals,
        ))))),
        "js" => Ok(Value::Str(Cow::Owned(format::js_escape(&eval_args(&vals))))),
        "urlquery" => Ok(Value::Str(Cow::Owned(format::query_escape(&eval_args(
            &vals,
        ))))),
        "call" => {
            at_least(name, &vals, 1)?;
            match &vals[0] {
                Value::Invalid | Value::Nil => call_err("call of nil"),
                v => call_err(format!(
                    "non-function {} of type {}",
                    {
                        let mut s = String::new();
                        format::write_value(v, &mut s);
                        s
                    },
                    v.type_name()
                )),
            }
        }
        "parseInt" => {
            arity(name, &vals, 3)?;
            let Value::Str(s) = &vals[0] else {
                return Err(FnError::Plain(format!(
                    "wrong type for value; expected string; got {}",
                    vals[0].type_name()
                )));
            };
            let mut ints = [0i64; 2];
            for (slot, v) in ints.iter_mut().zip(&vals[1..]) {
                match v {
                    Value::Int(i) => *slot = *i,
                    other => {
                        return Err(FnError::Plain(format!(
                            "wrong type for value; expected int; got {}",
                            other.type_name()
                        )));
                    }
                }
            }
            parse_uint(s, ints[0], ints[1])
                .map(|u| Value::Uint(u, "uint64"))
                .map_err(FnError::Call)
        }
        other => Err(FnError::Plain(format!("function {other:?} not defined"))),
    }
}

/// The text html/js/urlquery work on: a lone string as is, anything else as `fmt.Sprint`.
fn eval_args(vals: &[Value<'_>]) -> String {
    if let [Value::Str(s)] = vals {
        return s.to_string();
    }
    format::sprint(vals)
}

fn index_arg(idx: &Value<'_>, cap: usize) -> Result<usize, FnError> {
    let x = match idx {
        Value::Int(i) => *i as i128,
        Value::Uint(u, _) => *u as i128,
        Value::Invalid | Value::Nil => return call_err("cannot index slice/array with nil"),
        other => {
            return call_err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ));
        }
    };
    if x < 0 || x as u128 >= cap as u128 {
        return call_err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index_one<'a>(item: Value<'a>, idx: &Value<'_>) -> FResult<'a> {
    match item {
        Value::Str(s) => {
            let i = index_arg(idx, s.len())?;
            Ok(Value::Uint(u64::from(s.as_bytes()[i]), "uint8"))
        }
        Value::List(l) => {
            let i = index_arg(idx, l.len())?;
            Ok(l[i].clone())
        }
        Value::Object(o) => match o.kind() {
            Kind::Slice => {
                let i = index_arg(idx, o.len())?;
                Ok(o.index(i))
            }
            Kind::Map => match idx {
                Value::Str(k) => Ok(o.field(k).unwrap_or_else(|| o.zero())),
                other => call_err(format!(
                    "value has type {}; should be string",
                    other.type_name()
                )),
            },
            Kind::Struct => call_err(format!("can't index item of type {}", o.type_name())),
        },
        Value::Invalid | Value::Nil => call_err("index of untyped nil"),
        other => call_err(format!("can't index item of type {}", other.type_name())),
    }
}

fn slice<'a>(item: Value<'a>, idx: &[Value<'a>]) -> FResult<'a> {
    let len = match &item {
        Value::Str(s) => {
            if idx.len() > 2 {
                return call_err("cannot 3-index slice a string");
            }
            s.len()
        }
        Value::List(l) => l.len(),
        Value::Object(o) if o.kind() == Kind::Slice => o.len(),
        Value::Invalid | Value::Nil => return call_err("slice of untyped nil"),
        other => return call_err(format!("can't slice item of type {}", other.type_name())),
    };
    if idx.len() > 3 {
        return call_err(format!("too many slice indexes: {}", idx.len()));
    }
    let mut bounds = [0usize, len, len];
    for (i, v) in idx.iter().enumerate() {
        bounds[i] = index_arg(v, len + 1)?;
    }
    if bounds[0] > bounds[1] {
        return call_err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    if idx.len() == 3 && bounds[1] > bounds[2] {
        return call_err(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        ));
    }
    let (lo, hi) = (bounds[0], bounds[1]);
    match item {
        Value::Str(s) => {
            let b = &s.as_bytes()[lo..hi];
            Ok(Value::Str(Cow::Owned(
                String::from_utf8_lossy(b).into_owned(),
            )))
        }
        Value::List(l) => Ok(Value::List(l[lo..hi].to_vec())),
        Value::Object(o) => Ok(Value::List((lo..hi).map(|i| o.index(i)).collect())),
        _ => call_err("slice of untyped nil"),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Basic {
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
    Invalid,
}

fn basic(v: &Value<'_>) -> Basic {
    match v {
        Value::Bool(_) => Basic::Bool,
        Value::Int(_) => Basic::Int,
        Value::Uint(..) => Basic::Uint,
        Value::Float(_) => Basic::Float,
        Value::Str(_) => Basic::Str,
        Value::Invalid | Value::Nil => Basic::Invalid,
        _ => Basic::Other,
    }
}

/// Go's `eq` for two values.
fn equal(a: &Value<'_>, b: &Value<'_>) -> Result<bool, FnError> {
    let (ka, kb) = (basic(a), basic(b));
    if ka != kb {
        return match (a, b) {
            (Value::Int(i), Value::Uint(u, _)) | (Value::Uint(u, _), Value::Int(i)) => {
                Ok(*i >= 0 && *i as u64 == *u)
            }
            _ if ka == Basic::Invalid || kb == Basic::Invalid => Ok(false),
            _ => call_err("incompatible types for comparison"),
        };
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Uint(x, _), Value::Uint(y, _)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Invalid | Value::Nil, Value::Invalid | Value::Nil) => true,
        (Value::Object(x), Value::Object(y)) if x.kind() == Kind::Struct => {
            std::ptr::addr_eq(*x as *const dyn Object, *y as *const dyn Object)
        }
        _ => return call_err("non-comparable types"),
    })
}

/// Go's `lt`.
fn less(a: &Value<'_>, b: &Value<'_>) -> Result<bool, FnError> {
    let (ka, kb) = (basic(a), basic(b));
    if matches!(ka, Basic::Bool | Basic::Other | Basic::Invalid)
        || matches!(kb, Basic::Bool | Basic::Other | Basic::Invalid)
    {
        return call_err("invalid type for comparison");
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Uint(x, _), Value::Uint(y, _)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Str(x), Value::Str(y)) => x < y,
        (Value::Int(i), Value::Uint(u, _)) => *i < 0 || (*i as u64) < *u,
        (Value::Uint(u, _), Value::Int(i)) => *i >= 0 && *u < *i as u64,
        _ => return call_err("incompatible types for comparison"),
    })
}

/// Go's `strconv.ParseUint(s, base, bitSize)`, with its error texts.
pub fn parse_uint(s: &str, base: i64, bit_size: i64) -> Result<u64, String> {
    let syntax = || {
        format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            format::go_quote(s)
        )
    };
    let range = || {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            format::go_quote(s)
        )
    };
    if s.is_empty() {
        return Err(syntax());
    }
    let base0 = base == 0;
    let mut digits = s;
    let base = if base0 {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("0x") {
            digits = &s[2..];
            16
        } else if lower.starts_with("0o") {
            digits = &s[2..];
            8
        } else if lower.starts_with("0b") {
            digits = &s[2..];
            2
        } else if s.len() > 1 && s.starts_with('0') {
            digits = &s[1..];
            8
        } else {
            10
        }
    } else if (2..=36).contains(&base) {
        base as u32
    } else {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid base {base}",
            format::go_quote(s)
        ));
    };
    let bits = if bit_size == 0 { 64 } else { bit_size };
    if !(1..=64).contains(&bits) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid bit size {bit_size}",
            format::go_quote(s)
        ));
    }
    let max: u64 = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    let mut overflow = false;
    if digits.is_empty() && base0 && s.len() > 1 {
        return Err(syntax());
    }
    for c in digits.bytes() {
        if c == b'_' && base0 {
            underscores = true;
            continue;
        }
        let d = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'a'..=b'z' | b'A'..=b'Z' => u32::from(c.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(syntax()),
        };
        if d >= base {
            return Err(syntax());
        }
        if overflow {
            continue;
        }
        match n
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) if v <= max => n = v,
            _ => overflow = true,
        }
    }
    if underscores && !underscore_ok(s) {
        return Err(syntax());
    }
    if overflow {
        return Err(range());
    }
    Ok(n)
}

/// Go's rule for underscores in base-0 literals: only between digits (or after the prefix).
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'x' | b'o' | b'b') {
        hex = b[1].eq_ignore_ascii_case(&b'x');
        i = 2;
        saw = b'0';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

#[cfg(test)]
mod tests;
