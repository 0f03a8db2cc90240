//! The engine construct by construct, with the outputs and error texts Go gives.

use super::*;

/// A stand-in for CoreDNS's data: `.Name`, `.Type`, `.Match` (two entries), `.Group`.
struct Data {
    matches: Vec<String>,
    groups: Vec<(String, String)>,
}

struct List<'d>(&'d [String]);

impl Object for List<'_> {
    fn type_name(&self) -> &'static str {
        "[]string"
    }
    fn kind(&self) -> Kind {
        Kind::Slice
    }
    fn field(&self, _: &str) -> Option<Value<'_>> {
        None
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn index(&self, i: usize) -> Value<'_> {
        Value::str(&self.0[i])
    }
}

struct Map<'d>(&'d [(String, String)]);

impl Object for Map<'_> {
    fn type_name(&self) -> &'static str {
        "map[string]string"
    }
    fn kind(&self) -> Kind {
        Kind::Map
    }
    fn field(&self, k: &str) -> Option<Value<'_>> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| Value::str(v))
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn keys(&self) -> Vec<Cow<'_, str>> {
        let mut k: Vec<Cow<'_, str>> = self
            .0
            .iter()
            .map(|(n, _)| Cow::Borrowed(n.as_str()))
            .collect();
        k.sort();
        k
    }
}

struct Dot<'d> {
    matches: List<'d>,
    groups: Map<'d>,
}

impl Object for Dot<'_> {
    fn type_name(&self) -> &'static str {
        "*template.templateData"
    }
    fn kind(&self) -> Kind {
        Kind::Struct
    }
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "Name" => Value::str("a.example."),
            "Type" => Value::str("A"),
            "Empty" => Value::str(""),
            "Match" => Value::Object(&self.matches),
            "Group" => Value::Object(&self.groups),
            _ => return None,
        })
    }
}

fn data() -> Data {
    Data {
        matches: vec!["ip-10-1-2-3.example.".into(), "x".into()],
        groups: vec![
            ("0".into(), "ip-10-1-2-3.example.".into()),
            ("1".into(), "x".into()),
            ("b".into(), "1".into()),
            ("a".into(), "10".into()),
        ],
    }
}

fn render(src: &str) -> Result<String, String> {
    let d = data();
    let dot = Dot {
        matches: List(&d.matches),
        groups: Map(&d.groups),
    };
    let t = Template::parse("answer", src).map_err(|e| e.to_string())?;
    let mut out = String::new();
    t.execute(&Value::Object(&dot), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn constructs() {
    for (src, want) in [
        ("plain text", "plain text"),
        (
            "{{ .Name }} 60 IN A 10.0.0.1",
            "a.example. 60 IN A 10.0.0.1",
        ),
        // Fields, maps, indexes.
        ("{{ index .Match 1 }}", "x"),
        ("{{ .Group.a }}.{{ .Group.b }}", "10.1"),
        ("{{ .Group.missing }}", "<no value>"),
        ("{{ index .Group \"missing\" }}|", "|"),
        ("{{ index .Group \"a\" }}", "10"),
        ("{{ .Match }}", "[ip-10-1-2-3.example. x]"),
        ("{{ .Group }}", "map[0:ip-10-1-2-3.example. 1:x a:10 b:1]"),
        ("{{ index \"AB\" 1 }}", "66"),
        // Pipelines and parentheses.
        ("{{ .Name | printf \"%s-x\" }}", "a.example.-x"),
        ("{{ \"abc\" | len }}", "3"),
        ("{{ len (index .Match 0) }}", "20"),
        ("{{ .Group.a | printf \"%s.%s\" .Group.b }}", "1.10"),
        // if / else if / else.
        ("{{ if eq .Type \"A\" }}a{{ else }}b{{ end }}", "a"),
        (
            "{{ if eq .Type \"AAAA\" }}6{{ else if eq .Type \"A\" }}4{{ else }}?{{ end }}",
            "4",
        ),
        ("{{ if .Empty }}y{{ else }}n{{ end }}", "n"),
        ("{{ if .Group.missing }}y{{ else }}n{{ end }}", "n"),
        // range, with else, two variables, maps, integers, break, continue.
        (
            "{{ range .Match }}[{{ . }}]{{ end }}",
            "[ip-10-1-2-3.example.][x]",
        ),
        (
            "{{ range $i, $e := .Match }}{{ $i }}={{ $e }};{{ end }}",
            "0=ip-10-1-2-3.example.;1=x;",
        ),
        ("{{ range $k, $v := .Group }}{{ $k }}{{ end }}", "01ab"),
        (
            "{{ range slice .Match 0 0 }}x{{ else }}none{{ end }}",
            "none",
        ),
        ("{{ range 3 }}{{ . }}{{ end }}", "012"),
        (
            "{{ range 5 }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}",
            "012",
        ),
        (
            "{{ range 4 }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "023",
        ),
        // with.
        ("{{ with .Group.a }}<{{ . }}>{{ end }}", "<10>"),
        ("{{ with .Empty }}y{{ else }}n{{ end }}", "n"),
        (
            "{{ with .Empty }}y{{ else with .Type }}{{ . }}{{ end }}",
            "A",
        ),
        // Variables: declare, use, assign in an inner scope.
        ("{{ $x := .Name }}{{ $x }}", "a.example."),
        (
            "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
            "2",
        ),
        ("{{ range .Match }}{{ $.Type }}{{ end }}", "AA"),
        // Trim markers and comments.
        ("a  {{- .Type -}}  b", "aAb"),
        ("a {{- /* comment */ -}} b", "ab"),
        ("a{{/* comment */}}b", "ab"),
        ("{{-3}}", "-3"),
        // Comparisons, including Go's mixed signed/unsigned rule.
        (
            "{{ eq 1 1 }} {{ ne 1 2 }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 3 2 }} {{ ge 1 2 }}",
            "true true true true true false",
        ),
        ("{{ eq .Type \"AAAA\" \"A\" }}", "true"),
        ("{{ lt \"a\" \"b\" }}", "true"),
        ("{{ lt (parseInt \"7f\" 16 8) 128 }}", "true"),
        ("{{ eq (parseInt \"10\" 10 8) 10 }}", "true"),
        // and / or / not, short-circuiting.
        (
            "{{ and 1 0 }} {{ and 1 2 }} {{ or \"\" \"x\" }} {{ not true }}",
            "0 2 x false",
        ),
        ("{{ or 1 (index .Match 99) }}", "1"),
        // Printing.
        ("{{ print 1 2 \"a\" 3 }}", "1 2a3"),
        ("{{ println 1 \"a\" }}", "1 a\n"),
        (
            "{{ printf \"%05d|%-4s|%x|%q|%v|%.2f|%t|%3c|%%\" 42 \"ab\" 255 \"q\" true 3.14159 false 65 }}",
            "00042|ab  |ff|\"q\"|true|3.14|false|  A|%",
        ),
        ("{{ printf \"%d %s\" 1 }}", "1 %!s(MISSING)"),
        ("{{ printf \"%d\" \"x\" }}", "%!d(string=x)"),
        ("{{ printf \"%d\" 1 2 }}", "1%!(EXTRA int=2)"),
        (
            "{{ 1.5 }} {{ 1e6 }} {{ 100000.0 }} {{ 0.0001 }} {{ 'a' }} {{ 0x10 }}",
            "1.5 1e+06 100000 0.0001 97 16",
        ),
        // parseInt is strconv.ParseUint.
        (
            "{{ parseInt \"0a\" 16 8 }}.{{ parseInt \"0x1F\" 0 64 }}",
            "10.31",
        ),
        // Escapers and slice.
        ("{{ html \"<a&'b'>\" }}", "&lt;a&amp;&#39;b&#39;&gt;"),
        ("{{ urlquery \"a b&c\" }}", "a+b%26c"),
        ("{{ js \"it's <x>\" }}", "it\\'s \\u003Cx\\u003E"),
        ("{{ slice \"abcdef\" 1 3 }}", "bc"),
        ("{{ slice .Match 1 }}", "[x]"),
        // define / template / block.
        (
            "{{ define \"t\" }}<{{ . }}>{{ end }}{{ template \"t\" .Name }}",
            "<a.example.>",
        ),
        ("{{ block \"b\" .Type }}[{{ . }}]{{ end }}", "[A]"),
    ] {
        assert_eq!(render(src).as_deref(), Ok(want), "{src}");
    }
}

#[test]
fn execution_errors_read_as_go_writes_them() {
    for (src, want) in [
        // CoreDNS's own BrokenTemplate test.
        (
            "{{ .Name }} 60 IN TXT \"{{ index .Match 2 }}\"",
            "template: answer:1:26: executing \"answer\" at <index .Match 2>: error calling index: index out of range: 2",
        ),
        (
            "{{ .Grup.d }}",
            "template: answer:1:3: executing \"answer\" at <.Grup.d>: can't evaluate field Grup in type *template.templateData",
        ),
        (
            "{{ parseInt \"zz\" 16 8 }}",
            "template: answer:1:3: executing \"answer\" at <parseInt \"zz\" 16 8>: error calling parseInt: strconv.ParseUint: parsing \"zz\": invalid syntax",
        ),
        (
            "{{ parseInt \"1ff\" 16 8 }}",
            "template: answer:1:3: executing \"answer\" at <parseInt \"1ff\" 16 8>: error calling parseInt: strconv.ParseUint: parsing \"1ff\": value out of range",
        ),
        (
            "\n{{ not }}",
            "template: answer:2:3: executing \"answer\" at <not>: wrong number of args for not: want 1 got 0",
        ),
        (
            "{{ lt true false }}",
            "template: answer:1:3: executing \"answer\" at <lt true false>: error calling lt: invalid type for comparison",
        ),
        (
            "{{ eq 1 \"a\" }}",
            "template: answer:1:3: executing \"answer\" at <eq 1 \"a\">: error calling eq: incompatible types for comparison",
        ),
        (
            "{{ \"a\" \"b\" }}",
            "template: answer:1:3: executing \"answer\" at <\"a\" \"b\">: can't give argument to non-function \"a\"",
        ),
        (
            "{{ template \"nope\" }}",
            "template: answer:1:3: executing \"answer\" at <{{template \"nope\"}}>: no such template \"nope\"",
        ),
    ] {
        assert_eq!(render(src), Err(want.to_string()), "{src}");
    }
}

#[test]
fn parse_errors_read_as_go_writes_them() {
    for (src, want) in [
        ("{{", "template: answer:1: unclosed action"),
        (
            "{{ .Name }",
            "template: answer:1: unexpected \"}\" in operand",
        ),
        (
            "{{ foo }}",
            "template: answer:1: function \"foo\" not defined",
        ),
        ("{{ $x }}", "template: answer:1: undefined variable \"$x\""),
        (
            "{{ $x = 1 }}",
            "template: answer:1: undefined variable \"$x\"",
        ),
        ("{{ if true }}x", "template: answer:1: unexpected EOF"),
        ("{{ end }}", "template: answer:1: unexpected {{end}}"),
        ("{{ else }}", "template: answer:1: unexpected {{else}}"),
        (
            "{{ break }}",
            "template: answer:1: {{break}} outside {{range}}",
        ),
        ("{{ }}", "template: answer:1: missing value for command"),
        (
            "a\n{{ foo }}",
            "template: answer:2: function \"foo\" not defined",
        ),
        (
            "{{ .Name | 3 }}",
            "template: answer:1: non executable command in pipeline stage 2",
        ),
        (
            "{{ /* x */ }}",
            "template: answer:1: unexpected \"/\" in command",
        ),
        (
            "{{/* x */ y}}",
            "template: answer:1: comment ends before closing delimiter",
        ),
        (
            "{{ range $i, $j, $k := . }}{{ end }}",
            "template: answer:1: too many declarations in range",
        ),
        (
            "{{ \"a\\\" }}",
            "template: answer:1: unterminated quoted string",
        ),
        (
            "{{ \"a\n\" }}",
            "template: answer:1: unterminated quoted string",
        ),
        (
            "{{ 'a }}",
            "template: answer:1: unterminated character constant",
        ),
    ] {
        match Template::parse("answer", src) {
            Ok(_) => panic!("{src}: parsed"),
            Err(e) => assert_eq!(e.to_string(), want, "{src}"),
        }
    }
}

#[test]
fn tree_strings_match_go() {
    for (src, want) in [
        (
            "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}",
            "{{.Name}} 60 IN A {{.Group.a}}.{{.Group.b}}",
        ),
        (
            "{{ if eq .Type \"A\" }}x{{ else if .Name }}y{{ else }}z{{ end }}",
            "{{if eq .Type \"A\"}}x{{else}}{{if .Name}}y{{else}}z{{end}}{{end}}",
        ),
        (
            "{{- $x := .Name | printf \"%s\" -}}",
            "{{$x := .Name | printf \"%s\"}}",
        ),
        (
            "{{ range $i, $e := .Match }}{{ $e }}{{ end }}",
            "{{range $i, $e := .Match}}{{$e}}{{end}}",
        ),
        (
            "{{ len (index .Match 0) }} {{/* c */}}",
            "{{len (index .Match 0)}} ",
        ),
        ("{{ parseInt .Group.b 16 8 }}", "{{parseInt .Group.b 16 8}}"),
    ] {
        let t = Template::parse("answer", src).expect(src);
        assert_eq!(t.tree_string(), want, "{src}");
    }
}

#[test]
fn runaway_templates_stop() {
    assert!(render("{{ range 200000 }}{{ end }}").is_err());
    assert!(
        render("{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}").is_err()
    );
    assert!(render("{{ range 60000 }}xx{{ end }}").is_err());
}

#[test]
fn parse_uint_is_strconv() {
    assert_eq!(parse_uint("255", 10, 8), Ok(255));
    assert_eq!(parse_uint("0b101", 0, 0), Ok(5));
    assert_eq!(parse_uint("0o17", 0, 0), Ok(15));
    assert_eq!(parse_uint("017", 0, 0), Ok(15));
    assert_eq!(parse_uint("1_000", 0, 0), Ok(1000));
    assert!(parse_uint("1_000", 10, 0).is_err());
    assert!(
        parse_uint("256", 10, 8)
            .unwrap_err()
            .ends_with("value out of range")
    );
    assert!(
        parse_uint("-1", 10, 8)
            .unwrap_err()
            .ends_with("invalid syntax")
    );
    assert!(
        parse_uint("1", 1, 8)
            .unwrap_err()
            .ends_with("invalid base 1")
    );
    assert!(
        parse_uint("1", 10, 65)
            .unwrap_err()
            .ends_with("invalid bit size 65")
    );
}
