// Runs an Argo CD health check script the way Argo CD does (gopher-lua, the object as the
// global table `obj`), for each JSON object in a JSON array on stdin; prints a JSON array of
// {"status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch t := v.(type) {
	case map[string]interface{}:
		tbl := L.NewTable()
		for k, x := range t {
			tbl.RawSetString(k, toLua(L, x))
		}
		return tbl
	case []interface{}:
		tbl := L.NewTable()
		for _, x := range t {
			tbl.Append(toLua(L, x))
		}
		return tbl
	case string:
		return lua.LString(t)
	case float64:
		return lua.LNumber(t)
	case bool:
		return lua.LBool(t)
	default:
		return lua.LNil
	}
}

func main() {
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var objs []interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&objs); err != nil {
		panic(err)
	}
	out := []map[string]string{}
	for _, o := range objs {
		L := lua.NewState(lua.Options{SkipOpenLibs: false})
		L.SetGlobal("obj", toLua(L, o))
		if err := L.DoString(string(script)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ret := L.Get(-1).(*lua.LTable)
		out = append(out, map[string]string{
			"status":  ret.RawGetString("status").String(),
			"message": ret.RawGetString("message").String(),
		})
		L.Close()
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
