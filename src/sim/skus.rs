//! The licence catalogue of the synthetic tenant.
//!
//! Real skuIds and skuPartNumbers, so a connector's friendly-name mapping can be tested against
//! the simulator. Two deliberate gaps: VISIOCLIENT is subscribed but nobody holds it, and
//! EMSPREMIUM is held by some users but missing from `/subscribedSkus` (a lapsed subscription
//! whose assignments linger), and its product name contains " + ".

/// One licence SKU.
pub struct Sku {
    pub sku_id: &'static str,
    pub part_number: &'static str,
    /// The name the usage reports print in "Assigned Products".
    pub product_name: &'static str,
    /// Listed by `/subscribedSkus`.
    pub subscribed: bool,
    pub capability_status: &'static str,
    /// (servicePlanId, servicePlanName)
    pub plans: &'static [(&'static str, &'static str)],
}

const EXCHANGE_S_ENTERPRISE: (&str, &str) = (
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "EXCHANGE_S_ENTERPRISE",
);
const EXCHANGE_S_STANDARD: (&str, &str) = (
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c",
    "EXCHANGE_S_STANDARD",
);
const TEAMS1: (&str, &str) = ("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1");
const SHAREPOINTENTERPRISE: (&str, &str) = (
    "5dbe027f-2339-4123-9542-606e4d348a72",
    "SHAREPOINTENTERPRISE",
);
const OFFICESUBSCRIPTION: (&str, &str) =
    ("43de0ff5-c92c-492b-9116-175376d08c38", "OFFICESUBSCRIPTION");
const BI_AZURE_P0: (&str, &str) = ("2049e525-b859-401b-b2a0-e0a31c4b1fe4", "BI_AZURE_P0");
const FLOW_P2_VIRAL: (&str, &str) = ("50e68c76-46c6-4674-81f9-75456511b170", "FLOW_P2_VIRAL");
const VISIO_CLIENT_SUBSCRIPTION: (&str, &str) = (
    "663a804f-1c30-4ff0-9915-9db84f0d1cea",
    "VISIO_CLIENT_SUBSCRIPTION",
);

/// The Teams service plan, which some users have disabled inside their E3.
pub const TEAMS1_PLAN_ID: &str = TEAMS1.0;

pub const SKUS: &[Sku] = &[
    Sku {
        sku_id: "05e9a617-0261-4cee-bb44-138d3ef5d965",
        part_number: "SPE_E3",
        product_name: "MICROSOFT 365 E3",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[
            EXCHANGE_S_ENTERPRISE,
            TEAMS1,
            SHAREPOINTENTERPRISE,
            OFFICESUBSCRIPTION,
        ],
    },
    Sku {
        sku_id: "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
        part_number: "SPE_E5",
        product_name: "MICROSOFT 365 E5",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[
            EXCHANGE_S_ENTERPRISE,
            TEAMS1,
            SHAREPOINTENTERPRISE,
            OFFICESUBSCRIPTION,
        ],
    },
    Sku {
        sku_id: "6fd2c87f-b296-42f0-b197-1e91e994b900",
        part_number: "ENTERPRISEPACK",
        product_name: "OFFICE 365 E3",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[
            EXCHANGE_S_ENTERPRISE,
            TEAMS1,
            SHAREPOINTENTERPRISE,
            OFFICESUBSCRIPTION,
        ],
    },
    Sku {
        sku_id: "4b9405b0-7788-4568-add1-99614e613b69",
        part_number: "EXCHANGESTANDARD",
        product_name: "EXCHANGE ONLINE (PLAN 1)",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[EXCHANGE_S_STANDARD],
    },
    Sku {
        sku_id: "a403ebcc-fae0-4ca2-8c8c-7a907fd6c235",
        part_number: "POWER_BI_STANDARD",
        product_name: "POWER BI (FREE)",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[BI_AZURE_P0],
    },
    Sku {
        sku_id: "f30db892-07e9-47e9-837c-80727f46fd3d",
        part_number: "FLOW_FREE",
        product_name: "MICROSOFT POWER AUTOMATE FREE",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[FLOW_P2_VIRAL],
    },
    Sku {
        sku_id: "710779e8-3d4a-4c88-adb9-386c958d1fdf",
        part_number: "TEAMS_EXPLORATORY",
        product_name: "MICROSOFT TEAMS EXPLORATORY",
        subscribed: true,
        capability_status: "Warning",
        plans: &[TEAMS1],
    },
    Sku {
        sku_id: "c5928f49-12ba-48f7-ada3-0d743a3601d5",
        part_number: "VISIOCLIENT",
        product_name: "VISIO ONLINE PLAN 2",
        subscribed: true,
        capability_status: "Enabled",
        plans: &[VISIO_CLIENT_SUBSCRIPTION],
    },
    Sku {
        sku_id: "b05e124f-c7cc-45a0-a6aa-8cf78c946968",
        part_number: "EMSPREMIUM",
        product_name: "ENTERPRISE MOBILITY + SECURITY E5",
        subscribed: false,
        capability_status: "Enabled",
        plans: &[],
    },
];

pub const SPE_E3: usize = 0;
pub const SPE_E5: usize = 1;
pub const ENTERPRISEPACK: usize = 2;
pub const EXCHANGESTANDARD: usize = 3;
pub const POWER_BI_STANDARD: usize = 4;
pub const FLOW_FREE: usize = 5;
pub const TEAMS_EXPLORATORY: usize = 6;
pub const EMSPREMIUM: usize = 8;

/// Whether a SKU carries the Office apps, SharePoint and OneDrive.
pub fn is_suite(sku: usize) -> bool {
    matches!(sku, SPE_E3 | SPE_E5 | ENTERPRISEPACK)
}

/// Whether a SKU carries an Exchange mailbox.
pub fn has_exchange(sku: usize) -> bool {
    is_suite(sku) || sku == EXCHANGESTANDARD
}
