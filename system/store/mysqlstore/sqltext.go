package mysqlstore

import "strings"

// rowsOf returns n parenthesised groups of width placeholders, comma
// separated: "(?,?),(?,?)". Only placeholders are ever built into SQL
// text; values always travel as arguments.
func rowsOf(n, width int) string {
	group := "(" + strings.TrimSuffix(strings.Repeat("?,", width), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(group+",", n), ",")
}
