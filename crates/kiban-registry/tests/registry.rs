//! The registry's behaviour, run against SQLite always and against a real PostgreSQL server
//! when `KIBAN_TEST_POSTGRES_URL` names one (CI starts one; under CI its absence is a failure).

use kiban_registry::{Backend, MIGRATIONS, Registry, RegistryError};
use rand::RngExt;

/// A fresh registry per backend: a temp SQLite file, and a new database on the PostgreSQL server.
struct Fresh {
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

async fn fresh_backends() -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![Fresh {
        url: Registry::sqlite_url(&dir.path().join("registry.sqlite")),
        backend: Backend::Sqlite,
        _dir: Some(dir),
    }];
    match std::env::var("KIBAN_TEST_POSTGRES_URL") {
        Ok(admin) => {
            let name = format!("kiban_test_{:016x}", rand::rng().random::<u64>());
            let reg = Registry::open(&admin).await.expect("PostgreSQL test server reachable");
            reg.execute_admin(&format!("CREATE DATABASE {name}")).await.unwrap();
            reg.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            v.push(Fresh { url: format!("{base}/{name}"), backend: Backend::Postgres, _dir: None });
        }
        Err(_) => assert!(std::env::var("CI").is_err(), "CI must set KIBAN_TEST_POSTGRES_URL so PostgreSQL is tested"),
    }
    v
}

#[tokio::test]
async fn migrations_apply_once_and_forward_only_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        assert_eq!(reg.backend(), f.backend);
        assert_eq!(reg.migration_status().await.unwrap().pending.len(), MIGRATIONS.len());
        assert!(matches!(Registry::open_current(&f.url).await, Err(RegistryError::Pending(_))));
        let applied = reg.migrate().await.unwrap();
        assert_eq!(applied, MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>());
        assert!(reg.migrate().await.unwrap().is_empty(), "second run applies nothing");
        assert!(reg.migration_status().await.unwrap().is_current());
        reg.close().await;
        Registry::open_current(&f.url).await.unwrap().close().await;
    }
}

#[tokio::test]
async fn edited_or_newer_migrations_are_refused() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        reg.execute_admin("UPDATE kiban_migrations SET checksum = 'x' WHERE version = 1").await.unwrap();
        let err = reg.migration_status().await.unwrap_err();
        assert!(matches!(err, RegistryError::ChecksumMismatch { version: 1, .. }), "{err}");
        reg.execute_admin(&format!(
            "UPDATE kiban_migrations SET checksum = '{}' WHERE version = 1",
            MIGRATIONS[0].checksum()
        ))
        .await
        .unwrap();
        reg.execute_admin("INSERT INTO kiban_migrations VALUES (9999, 'future', 'x', 'now')").await.unwrap();
        let err = reg.migration_status().await.unwrap_err();
        assert!(err.to_string().contains("9999") && err.to_string().contains("upgrade kiban"), "{err}");
        reg.close().await;
    }
}

#[tokio::test]
async fn providers_and_runs_round_trip_on_every_backend() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        let p = reg.register_provider("prov-a", "合成東京都総合病院（架空）", 13).await.unwrap();
        assert_eq!(p.name, "合成東京都総合病院（架空）");
        // Registering again keeps the first record.
        let again = reg.register_provider("prov-a", "other", 1).await.unwrap();
        assert_eq!(again, p);
        reg.register_provider("prov-b", "B", 27).await.unwrap();
        assert_eq!(
            reg.providers().await.unwrap().iter().map(|p| p.provider_id.as_str()).collect::<Vec<_>>(),
            ["prov-a", "prov-b"]
        );
        reg.start_run("r1", "demo").await.unwrap();
        reg.finish_run("r1", &serde_json::json!({"patients": 10})).await.unwrap();
        assert!(reg.finish_run("r1", &serde_json::json!({})).await.is_err(), "a finished run is not rewritten");
        let runs = reg.runs(10).await.unwrap();
        assert_eq!(runs[0].summary_json.as_deref(), Some(r#"{"patients":10}"#));
        assert_eq!(reg.set_meta_once("data_dir_id", "a").await.unwrap(), "a");
        assert_eq!(reg.set_meta_once("data_dir_id", "b").await.unwrap(), "a");
        reg.close().await;
    }
}

#[tokio::test]
async fn unsupported_and_unreachable_urls_say_what_is_wrong() {
    let err = Registry::open("mysql://x").await.unwrap_err().to_string();
    assert!(err.contains("sqlite: or postgres://"), "{err}");
    let err = Registry::open("postgres://kiban:hunter2@127.0.0.1:1/db").await.unwrap_err().to_string();
    assert!(err.contains("cannot open the registry") && !err.contains("hunter2"), "{err}");
}
