//! Prints what the text de-identifier finds in each line of a file (for inspection).

fn main() {
    let path = std::env::args().nth(1).expect("usage: text_probe FILE");
    let text = std::fs::read_to_string(path).expect("UTF-8 file");
    for line in text.lines() {
        let spans = kiban_deid::text::detect(line);
        let found: Vec<String> = spans.iter().map(|s| format!("{}:{}", s.tag.name(), &line[s.start..s.end])).collect();
        println!("{line}\n    {}", found.join(" | "));
    }
}
