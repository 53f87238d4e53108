use opsbot::nlu::embed::{load, Backend};
use std::time::Instant;
fn main() {
    let threads: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let backend = match std::env::args().nth(2).as_deref() {
        Some("onnx") => Backend::Onnx {
            runtime: std::env::var("ORT_DYLIB_PATH").unwrap().into(),
        },
        _ => Backend::Candle,
    };
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    let e = load(&dir, &backend, threads).unwrap();
    for text in ["restart api in prod", "hey team, sorry to bother everyone this late, but the payments service in production has been throwing timeouts"] {
        let mut v = vec![];
        for _ in 0..300 { let t = Instant::now(); e.embed(&[text]).unwrap(); v.push(t.elapsed().as_micros()); }
        v.sort();
        println!("{backend:?} threads {threads} len {} median {} us p10 {} us", text.len(), v[150], v[30]);
    }
}
