// Command first-message sends one chat message from alice to bob through a
// running `zzim up` and waits until bob's client has it.
//
//	zzim up &
//	go run ./examples/first-message
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/wire"
)

func main() {
	entry := flag.String("entry", "127.0.0.1:7400", "an entry's TCP address (zzim up prints them)")
	secret := flag.String("secret", "zzim-dev-secret", "the cluster's token secret")
	flag.Parse()

	// A token would come from your login service; here we sign it ourselves.
	token := func(user string) string { return wire.SignToken([]byte(*secret), user, time.Now().Add(time.Hour)) }

	// A fresh device id per run: a (user, device) numbers its sends from 1,
	// so a rerun with the same device would be a resend of the first message
	// (the server answers it with the original seq and stores nothing new).
	device := fmt.Sprintf("phone-%d", time.Now().UnixNano())
	got := make(chan *wire.ChatMessage, 1)
	bob := clientrun.Start(client.Config{
		User: "bob", Device: device, Token: token("bob"), Entries: []string{*entry},
		OnDeliver: func(_ client.Env, m *wire.ChatMessage, via string) { got <- m },
	}, clientrun.Options{})
	defer bob.Stop()
	alice := clientrun.Start(client.Config{
		User: "alice", Device: device, Token: token("alice"), Entries: []string{*entry},
	}, clientrun.Options{})
	defer alice.Stop()

	// A conversation is (buyer, seller, listing): p:<buyer>:<seller>:<listing>.
	conv := "p:alice:bob:bike-42"
	alice.Do(func(c *client.Client, env client.Env) {
		if _, err := c.Send(env, conv, "hi bob, is the bike still for sale?"); err != nil {
			fmt.Fprintln(os.Stderr, "send:", err)
			os.Exit(1)
		}
	})
	select {
	case m := <-got:
		fmt.Printf("bob got seq %d from %s in %s: %q\n", m.Seq, m.SenderId, m.ConvId, m.Body)
	case <-time.After(10 * time.Second):
		fmt.Fprintln(os.Stderr, "no delivery within 10s: is `zzim up` running?")
		os.Exit(1)
	}
}
