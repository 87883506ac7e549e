//! The profile's `--remap-path-prefix=/src=.` keeps source paths (in panic
//! messages and debug info) the same wherever the sources sit.

fn main() {
    // A vendored dependency at work: itoa formats the number.
    let mut buf = itoa::Buffer::new();
    let answer = buf.format(6 * 7);
    println!("hello from {}, built reproducibly (itoa says {answer})", file!());
}
