-- A store database as sweepflow's schema version 2 wrote it (sqlite3 .dump). Never edit: tests open it to prove
-- that this version of the code still reads (or migrates) databases written by that one. Add a file per version.
BEGIN TRANSACTION;
CREATE TABLE agents (
	id VARCHAR NOT NULL, 
	queue VARCHAR NOT NULL, 
	pid INTEGER, 
	host VARCHAR, 
	max_jobs INTEGER NOT NULL, 
	started_at FLOAT NOT NULL, 
	heartbeat_at FLOAT NOT NULL, 
	stopped_at FLOAT, 
	PRIMARY KEY (id)
);
INSERT INTO "agents" VALUES('agent-1','gpu',123,'box',2,1800000001.0,1800000001.0,NULL);
CREATE TABLE queue_items (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	queue VARCHAR NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	priority INTEGER NOT NULL, 
	enqueued_at FLOAT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	claimed_by VARCHAR, 
	claimed_at FLOAT, 
	lease_expires_at FLOAT, 
	FOREIGN KEY(queue) REFERENCES queues (name), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
INSERT INTO "queue_items" VALUES(1,'gpu','21jndvu6',10,1800000002.0,'done','agent-1',1800000005.0,1800000065.0);
INSERT INTO "queue_items" VALUES(2,'gpu','opd8poc2',10,1800000003.0,'claimed','agent-1',1800000005.0,1800000065.0);
INSERT INTO "queue_items" VALUES(3,'gpu','evinqsb4',10,1800000004.0,'pending',NULL,NULL,NULL);
CREATE TABLE queues (
	name VARCHAR NOT NULL, 
	priority INTEGER DEFAULT 0 NOT NULL, 
	cost_per_hour FLOAT, 
	resource_args TEXT NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "queues" VALUES('gpu',10,3.6,'{"gpus":1}',1800000000.0);
CREATE TABLE run_history (
	run_id VARCHAR(32) NOT NULL, 
	step INTEGER NOT NULL, 
	"row" TEXT NOT NULL, 
	CONSTRAINT pk_run_history PRIMARY KEY (run_id, step), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
INSERT INTO "run_history" VALUES('21jndvu6',0,'{"_step":0,"loss":1.0}');
INSERT INTO "run_history" VALUES('21jndvu6',1,'{"_step":1,"loss":0.5}');
INSERT INTO "run_history" VALUES('opd8poc2',0,'{"_step":0,"loss":1.0}');
INSERT INTO "run_history" VALUES('opd8poc2',1,'{"_step":1,"loss":0.5}');
CREATE TABLE runs (
	id VARCHAR(32) NOT NULL, 
	sweep_id VARCHAR(32) NOT NULL, 
	number INTEGER NOT NULL, 
	queue VARCHAR NOT NULL, 
	config TEXT NOT NULL, 
	config_hash VARCHAR(64) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	attempt INTEGER DEFAULT 1 NOT NULL, 
	exit_code INTEGER, 
	summary TEXT NOT NULL, 
	stop_reason TEXT, 
	stop_requested TEXT, 
	agent_id VARCHAR, 
	queued_at FLOAT NOT NULL, 
	started_at FLOAT, 
	ended_at FLOAT, 
	cost_usd FLOAT, 
	search_info TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_runs_sweep_number UNIQUE (sweep_id, number), 
	CONSTRAINT uq_runs_sweep_config UNIQUE (sweep_id, config_hash), 
	FOREIGN KEY(sweep_id) REFERENCES sweeps (id) ON DELETE CASCADE, 
	FOREIGN KEY(queue) REFERENCES queues (name)
);
INSERT INTO "runs" VALUES('21jndvu6','muaqk24p',1,'gpu','{"lr":0.1}','9c9ba942d8bb6213cd855c3e8ddfeb6640a23616f11f4da3d8e77555902a6107','finished',1,0,'{"loss":0.5}',NULL,NULL,'agent-1',1800000002.0,1800000005.0,1800000015.0,0.01,'{"method":"random"}');
INSERT INTO "runs" VALUES('opd8poc2','muaqk24p',2,'gpu','{"lr":0.2}','d719c908f8bd139b3041a66deb271f79a9029ea6ff3edad705cb722cb61e22fe','running',1,NULL,'{"loss":0.5}',NULL,NULL,'agent-1',1800000003.0,1800000005.0,NULL,NULL,NULL);
INSERT INTO "runs" VALUES('evinqsb4','muaqk24p',3,'gpu','{"lr":0.3}','ad73c5b4b548818741bb6c16fc96a89e78203f6794f9bebbed00a80123a36a34','pending',1,NULL,'{}',NULL,NULL,NULL,1800000004.0,NULL,NULL,NULL,NULL);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(2,1.79602840745362067218e+09);
CREATE TABLE sweeps (
	id VARCHAR(32) NOT NULL, 
	"key" VARCHAR, 
	project VARCHAR NOT NULL, 
	config TEXT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	state_reason TEXT, 
	run_cap INTEGER, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	lease_owner VARCHAR, 
	lease_expires_at FLOAT, 
	prior_runs TEXT, 
	PRIMARY KEY (id), 
	UNIQUE ("key")
);
INSERT INTO "sweeps" VALUES('muaqk24p','v2/stage','proj','{"method":"random","run_cap":4,"parameters":{"lr":{"min":0.0,"max":1.0}}}','running',NULL,4,1800000000.0,1800000000.0,NULL,NULL,NULL);
CREATE INDEX ix_agents_queue_heartbeat ON agents (queue, heartbeat_at);
CREATE INDEX ix_runs_sweep_state ON runs (sweep_id, state);
CREATE INDEX ix_items_run ON queue_items (run_id);
CREATE UNIQUE INDEX uq_items_live_run ON queue_items (run_id) WHERE state != 'done';
CREATE INDEX ix_items_claim ON queue_items (queue, state, priority DESC, enqueued_at, id);
CREATE INDEX ix_items_lease ON queue_items (state, lease_expires_at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('queue_items',3);
COMMIT;
