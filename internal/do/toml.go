package do

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parseTOML reads the flat subset of TOML a profile needs: `key = value`
// lines (bare or quoted keys), values that are strings (basic or
// literal), booleans, integers, or arrays of those (over several lines,
// trailing comma allowed), and # comments. Tables are refused: a profile
// has none.
func parseTOML(text string) (map[string]any, error) {
	p := &tomlParser{s: text, line: 1}
	out := map[string]any{}
	for {
		p.skipSpace(true)
		if p.eof() {
			return out, nil
		}
		if p.peek() == '[' {
			return nil, p.errorf("tables are not supported in a profile")
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		p.skipSpace(false)
		if p.eof() || p.peek() != '=' {
			return nil, p.errorf("want = after %q", key)
		}
		p.i++
		p.skipSpace(false)
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, p.errorf("%q given twice", key)
		}
		out[key] = v
		p.skipSpace(false)
		if !p.eof() && p.peek() != '\n' {
			return nil, p.errorf("unexpected %q after the value of %q", p.peek(), key)
		}
	}
}

type tomlParser struct {
	s    string
	i    int
	line int
}

func (p *tomlParser) eof() bool  { return p.i >= len(p.s) }
func (p *tomlParser) peek() byte { return p.s[p.i] }

func (p *tomlParser) errorf(format string, a ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, a...))
}

// skipSpace skips blanks and comments, and newlines too when lines.
func (p *tomlParser) skipSpace(lines bool) {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			p.i++
		case c == '\n' && lines:
			p.i++
			p.line++
		case c == '#':
			for !p.eof() && p.peek() != '\n' {
				p.i++
			}
		default:
			return
		}
	}
}

func (p *tomlParser) key() (string, error) {
	if c := p.peek(); c == '"' || c == '\'' {
		return p.str()
	}
	start := p.i
	for !p.eof() {
		c := p.peek()
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			p.i++
			continue
		}
		break
	}
	if p.i == start {
		return "", p.errorf("want a key")
	}
	return p.s[start:p.i], nil
}

func (p *tomlParser) value() (any, error) {
	if p.eof() {
		return nil, p.errorf("want a value")
	}
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		return p.str()
	case c == '[':
		return p.array()
	}
	start := p.i
	for !p.eof() && !strings.ContainsRune(" \t\r\n,]#", rune(p.peek())) {
		p.i++
	}
	word := p.s[start:p.i]
	switch word {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(word, "_", ""), 10, 64)
	if err != nil {
		return nil, p.errorf("%q is not a string, boolean, integer or array (strings need quotes)", word)
	}
	return n, nil
}

func (p *tomlParser) array() ([]any, error) {
	p.i++ // [
	out := []any{}
	for {
		p.skipSpace(true)
		if p.eof() {
			return nil, p.errorf("unterminated array")
		}
		if p.peek() == ']' {
			p.i++
			return out, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipSpace(true)
		if !p.eof() && p.peek() == ',' {
			p.i++
		} else if p.eof() || p.peek() != ']' {
			return nil, p.errorf("want , or ] in an array")
		}
	}
}

// str reads a basic ("...", with escapes) or literal ('...') string.
func (p *tomlParser) str() (string, error) {
	q := p.peek()
	p.i++
	var b strings.Builder
	for {
		if p.eof() || p.peek() == '\n' {
			return "", p.errorf("unterminated string")
		}
		c := p.peek()
		p.i++
		switch {
		case c == q:
			return b.String(), nil
		case c == '\\' && q == '"':
			if p.eof() {
				return "", p.errorf("unterminated string")
			}
			e := p.peek()
			p.i++
			switch e {
			case '"', '\\':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if p.i+4 > len(p.s) {
					return "", p.errorf("short \\u escape")
				}
				r, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
				if err != nil || !utf8.ValidRune(rune(r)) {
					return "", p.errorf("bad \\u escape")
				}
				b.WriteRune(rune(r))
				p.i += 4
			default:
				return "", p.errorf("unknown escape \\%c", e)
			}
		default:
			b.WriteByte(c)
		}
	}
}
