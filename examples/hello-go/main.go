// A Go program built with Debian bookworm's go, reproducibly: the go
// profile's -trimpath keeps the build paths out of the binary.
package main

import "fmt"

func main() {
	fmt.Println("hello from hello-go, built reproducibly")
}
