//! The SmartModule registry: store keys, the `[group/]name[@version]`
//! filters, downloads.

use fluvio::dataplane::link::ErrorCode;
use fluvio::metadata::smartmodule::{
    FluvioSemVersion, SmartModuleMetadata, SmartModulePackage, SmartModuleSpec, SmartModuleWasm,
};

use crate::support::{api_code, cluster, connect, within};

fn module(wasm: &[u8], package: Option<(&str, &str, &str)>) -> anyhow::Result<SmartModuleSpec> {
    let meta = match package {
        Some((group, name, version)) => Some(SmartModuleMetadata {
            package: SmartModulePackage {
                name: name.to_owned(),
                group: group.to_owned(),
                version: FluvioSemVersion::parse(version)?,
                api_version: FluvioSemVersion::parse("0.1.0")?,
                ..Default::default()
            },
            ..Default::default()
        }),
        None => None,
    };
    Ok(SmartModuleSpec {
        meta,
        wasm: SmartModuleWasm::from_raw_wasm_bytes(wasm)?,
        ..Default::default()
    })
}

#[tokio::test]
async fn registers_and_downloads_by_plain_name_and_by_package() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let plain = b"\0asm\x01\0\0\0plain".to_vec();
    let packaged = b"\0asm\x01\0\0\0packaged".to_vec();
    within(admin.create("audit-filter".to_owned(), false, module(&plain, None)?)).await?;
    within(admin.create(
        "ignored-with-meta".to_owned(),
        false,
        module(&packaged, Some(("falcon-lake", "falcon-audit-to-cloudtrail", "0.1.0")))?,
    ))
    .await?;
    let mut keys = cluster.smartmodules();
    keys.sort();
    assert_eq!(keys, ["audit-filter", "falcon-audit-to-cloudtrail-falcon-lake-0.1.0"]);

    let download = |name: &str| {
        let name = name.to_owned();
        let admin = &admin;
        async move {
            let found = within(admin.list::<SmartModuleSpec, String>(vec![name])).await?;
            found
                .into_iter()
                .map(|m| Ok((m.name, m.spec.wasm.as_raw_wasm()?)))
                .collect::<anyhow::Result<Vec<_>>>()
        }
    };
    assert_eq!(
        download("audit-filter").await?,
        [("audit-filter".to_owned(), plain.clone())]
    );
    assert!(
        download("audit").await?.is_empty(),
        "a module without a package matches its key exactly"
    );
    let by_package = download("falcon-lake/falcon-audit-to-cloudtrail@0.1.0").await?;
    assert_eq!(
        by_package,
        [(
            "falcon-audit-to-cloudtrail-falcon-lake-0.1.0".to_owned(),
            packaged.clone()
        )]
    );
    assert_eq!(
        download("falcon-audit-to-cloudtrail").await?.len(),
        1,
        "the package name alone matches"
    );
    assert_eq!(download("falcon-lake/falcon-audit-to-cloudtrail").await?.len(), 1);
    assert!(
        download("falcon-lake/falcon-audit-to-cloudtrail@0.2.0")
            .await?
            .is_empty(),
        "another version"
    );
    assert!(
        download("other/falcon-audit-to-cloudtrail@0.1.0").await?.is_empty(),
        "another group"
    );
    assert!(
        download("falcon-audit-to-cloudtrail-falcon-lake-0.1.0")
            .await?
            .is_empty(),
        "a packaged module does not match its store key"
    );
    assert_eq!(within(admin.all::<SmartModuleSpec>()).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn summaries_leave_the_wasm_out_and_bad_packages_are_refused() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let fluvio = connect(&cluster).await?;
    let admin = fluvio.admin().await;
    let wasm = vec![7u8; 5000];
    within(admin.create("big-module".to_owned(), false, module(&wasm, None)?)).await?;
    let summary = within(admin.list_with_params::<SmartModuleSpec, String>(vec![], true)).await?;
    assert_eq!(summary.len(), 1);
    assert!(summary[0].spec.wasm.payload.is_empty());
    let stored_len = SmartModuleWasm::from_raw_wasm_bytes(&wasm)?.payload.len() as u32;
    assert_eq!(
        summary[0].spec.summary.as_ref().map(|s| s.wasm_length),
        Some(stored_len)
    );

    let error = within(admin.create(
        "x".to_owned(),
        false,
        module(&wasm, Some(("", "nameless-group", "1.0.0")))?,
    ))
    .await
    .expect_err("an empty group is refused");
    assert_eq!(api_code(&error), Some(ErrorCode::SmartModuleError));

    within(admin.delete::<SmartModuleSpec>("big-module")).await?;
    assert!(cluster.smartmodules().is_empty());
    let error = within(admin.delete::<SmartModuleSpec>("big-module"))
        .await
        .expect_err("gone");
    assert!(
        matches!(api_code(&error), Some(ErrorCode::SmartModuleNotFound { .. })),
        "{error:#}"
    );
    Ok(())
}
