// Writes dist/bundle.tar.gz and dist/bundle.zip from the files in data/,
// reproducibly: members sorted by name, owned by 0:0, stamped with
// SOURCE_DATE_EPOCH, gzip without a name or a time. Two flags break it on
// purpose, for the corpus's broken twins: -tar-mtime-now stamps the tar
// members with the time of the build, -zip-time-now the zip members.
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

func main() {
	tarNow := flag.Bool("tar-mtime-now", false, "stamp the tar members with the build time")
	zipNow := flag.Bool("zip-time-now", false, "stamp the zip members with the build time")
	flag.Parse()
	sde, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	check(err)
	fixed := time.Unix(sde, 0).UTC()
	names, err := filepath.Glob("data/*")
	check(err)
	sort.Strings(names)
	check(os.MkdirAll("dist", 0o755))
	writeTar(names, stamp(*tarNow, fixed))
	writeZip(names, stamp(*zipNow, fixed))
}

// stamp is the time members get: the fixed one, or now.
func stamp(now bool, fixed time.Time) time.Time {
	if now {
		return time.Now().UTC().Truncate(time.Second)
	}
	return fixed
}

func writeTar(names []string, mtime time.Time) {
	f, err := os.Create("dist/bundle.tar.gz")
	check(err)
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for _, name := range names {
		body, err := os.ReadFile(name)
		check(err)
		check(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: mtime, Format: tar.FormatUSTAR}))
		_, err = tw.Write(body)
		check(err)
	}
	check(tw.Close())
	check(gz.Close())
	check(f.Close())
}

func writeZip(names []string, mtime time.Time) {
	f, err := os.Create("dist/bundle.zip")
	check(err)
	zw := zip.NewWriter(f)
	for _, name := range names {
		body, err := os.ReadFile(name)
		check(err)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mtime})
		check(err)
		_, err = w.Write(body)
		check(err)
	}
	check(zw.Close())
	check(f.Close())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "archives:", err)
		os.Exit(1)
	}
}
