//! `cargo run -p lb-config --example check -- FILE...`: what `xlb check` will print.

fn main() {
    let mut failed = false;
    for arg in std::env::args().skip(1) {
        match lb_config::load(std::path::Path::new(&arg)) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("{w}");
                }
                if std::env::var_os("PRINT").is_some() {
                    print!("{}", loaded.config);
                }
            }
            Err(errors) => {
                eprintln!("{errors}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
