//! `portcullis_tls_certificate_expiry_seconds{certificate}`: seconds until
//! each served certificate expires, computed at scrape time from the live
//! material (so it counts down, and follows a reload).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

use super::TlsMaterial;

/// Name of the gauge, without the registry's `portcullis_` prefix.
const NAME: &str = "tls_certificate_expiry_seconds";

/// The expiry gauge of the live certificates.
pub(super) struct CertificateExpiry {
    material: Arc<ArcSwap<TlsMaterial>>,
    gauge: GaugeVec,
}

impl CertificateExpiry {
    /// Reports the certificates of `material` at every scrape.
    pub(super) fn new(material: Arc<ArcSwap<TlsMaterial>>) -> CertificateExpiry {
        let gauge = GaugeVec::new(
            Opts::new(
                NAME,
                "Seconds until a certificate of the TLS listener expires (negative once expired), by certificate file",
            ),
            &["certificate"],
        )
        .expect("static metric definition");
        CertificateExpiry { material, gauge }
    }
}

impl Collector for CertificateExpiry {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // Rebuilt every time: a reload may have dropped a certificate.
        self.gauge.reset();
        for certificate in self.material.load().certificates.iter() {
            self.gauge
                .with_label_values(&[certificate.label.as_str()])
                .set((certificate.not_after - now) as f64);
        }
        self.gauge.collect()
    }
}
