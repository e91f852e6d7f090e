package query

import (
	"unicode"
	"unicode/utf8"
)

type tokKind uint8

const (
	tEOF      tokKind = iota
	tWord             // bare word: field name, keyword or unquoted value
	tString           // quoted string, escapes removed
	tLParen           // (
	tRParen           // )
	tLBrack           // [
	tRBrack           // ]
	tComma            // ,
	tEq               // = or ==
	tNe               // !=
	tMatch            // ~ or =~
	tNotMatch         // !~
	tLt               // <
	tLe               // <=
	tGt               // >
	tGe               // >=
	tAnd              // &&
	tOr               // ||
	tNot              // ! (not followed by = or ~)
)

var tokNames = [...]string{
	tEOF: "end of filter", tWord: "word", tString: "quoted string",
	tLParen: "'('", tRParen: "')'", tLBrack: "'['", tRBrack: "']'", tComma: "','",
	tEq: "'='", tNe: "'!='", tMatch: "'~'", tNotMatch: "'!~'",
	tLt: "'<'", tLe: "'<='", tGt: "'>'", tGe: "'>='",
	tAnd: "'&&'", tOr: "'||'", tNot: "'!'",
}

type token struct {
	kind tokKind
	text string // the word, or the string's unescaped content
	pos  int    // byte offset in the source
	end  int    // byte offset just past the token
}

// describe names the token for an error message.
func (t token) describe() string {
	switch t.kind {
	case tWord:
		return quoteForMsg(t.text)
	case tString:
		return "quoted string " + quoteForMsg(t.text)
	}
	return tokNames[t.kind]
}

// isWordRune reports whether r may appear in a bare word. Everything but
// white space and the characters with a meaning of their own may: so
// system:node:*, 10.0.0.0/8, 2026-01-02T15:04:05Z, -2h and
// authorization.k8s.io/decision need no quotes.
func isWordRune(r rune) bool {
	switch r {
	case '(', ')', '[', ']', ',', '"', '\'', '=', '!', '~', '<', '>', '&', '|':
		return false
	}
	return !unicode.IsSpace(r)
}

// lex splits src into tokens, ending with a tEOF token.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if !unicode.IsSpace(r) {
				break
			}
			i += n
		}
		if i >= len(src) {
			toks = append(toks, token{kind: tEOF, pos: len(src), end: len(src)})
			return toks, nil
		}
		start := i
		two := ""
		if i+2 <= len(src) {
			two = src[i : i+2]
		}
		emit := func(k tokKind, n int) {
			i += n
			toks = append(toks, token{kind: k, text: src[start:i], pos: start, end: i})
		}
		switch c := src[i]; c {
		case '(':
			emit(tLParen, 1)
		case ')':
			emit(tRParen, 1)
		case '[':
			emit(tLBrack, 1)
		case ']':
			emit(tRBrack, 1)
		case ',':
			emit(tComma, 1)
		case '=':
			switch two {
			case "==":
				emit(tEq, 2)
			case "=~":
				emit(tMatch, 2)
			default:
				emit(tEq, 1)
			}
		case '!':
			switch two {
			case "!=":
				emit(tNe, 2)
			case "!~":
				emit(tNotMatch, 2)
			default:
				emit(tNot, 1)
			}
		case '~':
			emit(tMatch, 1)
		case '<':
			if two == "<=" {
				emit(tLe, 2)
			} else {
				emit(tLt, 1)
			}
		case '>':
			if two == ">=" {
				emit(tGe, 2)
			} else {
				emit(tGt, 1)
			}
		case '&', '|':
			if two == "&&" {
				emit(tAnd, 2)
			} else if two == "||" {
				emit(tOr, 2)
			} else {
				return nil, errorAt(src, start, "unexpected %q: write 'and' or 'or', or quote a value that contains it", string(c))
			}
		case '"', '\'':
			s, end, err := lexString(src, start)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tString, text: s, pos: start, end: end})
			i = end
		default:
			for i < len(src) {
				r, n := utf8.DecodeRuneInString(src[i:])
				if !isWordRune(r) {
					break
				}
				i += n
			}
			toks = append(toks, token{kind: tWord, text: src[start:i], pos: start, end: i})
		}
	}
}

// lexString reads the quoted string that starts at src[start]. Inside
// quotes, \\ stands for a backslash and \" and \' for the quotes; any other
// backslash is kept as it is, so regular expressions like "\d+" read
// naturally.
func lexString(src string, start int) (s string, end int, err error) {
	q := src[start]
	i := start + 1
	// Fast path: no escapes.
	for j := i; j < len(src); j++ {
		if src[j] == '\\' {
			break
		}
		if src[j] == q {
			return src[i:j], j + 1, nil
		}
	}
	buf := make([]byte, 0, len(src)-i)
	for i < len(src) {
		c := src[i]
		switch {
		case c == q:
			return string(buf), i + 1, nil
		case c == '\\' && i+1 < len(src) && (src[i+1] == '\\' || src[i+1] == '"' || src[i+1] == '\''):
			buf = append(buf, src[i+1])
			i += 2
		default:
			buf = append(buf, c)
			i++
		}
	}
	return "", 0, errorAt(src, start, "unterminated quoted string: missing closing %c", q)
}
