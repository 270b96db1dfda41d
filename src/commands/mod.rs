pub mod create;
pub mod doctor;
pub mod export;
pub mod info;
pub mod run;
