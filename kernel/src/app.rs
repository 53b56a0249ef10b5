//! Apps: what the kernel runs once the machine is up, chosen at boot with
//! `app=NAME`. The `apps` crate defines them; the `boot` crate hands the list
//! to [`crate::boot::primary`].

/// An app's entry point: its arguments (after `--`) in, exit status out.
pub type AppMain = fn(args: &[&str]) -> u8;

/// One app.
#[derive(Debug)]
pub struct App {
    pub name: &'static str,
    /// One line for listings.
    pub about: &'static str,
    pub main: AppMain,
}

/// Finds `name` in `apps`.
pub fn find<'a>(apps: &'a [App], name: &str) -> Option<&'a App> {
    apps.iter().find(|a| a.name == name)
}

/// Writes "a, b, c" for the valid app names.
pub struct Names<'a>(pub &'a [App]);

impl core::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, app) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(app.name)?;
        }
        Ok(())
    }
}
