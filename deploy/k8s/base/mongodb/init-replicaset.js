// Run by the mongodb-init Job: mongosh --nodb --file init-replicaset.js
// Initiates replica set $MONGODB_REPLICA_SET with members
// $MONGODB_STATEFULSET-0..N-1.$MONGODB_SERVICE:27017 (N = $MONGODB_MEMBERS),
// waits for a primary, then creates or updates the application user with
// readWrite on $MONGODB_DATABASE. Safe to run again.
const env = process.env;
const rsName = env.MONGODB_REPLICA_SET || 'rs0';
const n = parseInt(env.MONGODB_MEMBERS || '3', 10);
const sts = env.MONGODB_STATEFULSET || 'mongodb';
const svc = env.MONGODB_SERVICE || 'mongodb-headless';
const dbName = env.MONGODB_DATABASE || 'sluice';
const rootUser = encodeURIComponent(env.MONGO_INITDB_ROOT_USERNAME);
const rootPass = encodeURIComponent(env.MONGO_INITDB_ROOT_PASSWORD);
const appUser = env.SLUICE_DB_USERNAME;
const appPass = env.SLUICE_DB_PASSWORD;

const hosts = [];
for (let i = 0; i < n; i++) hosts.push(`${sts}-${i}.${svc}:27017`);

function retry(what, fn, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      const r = fn();
      if (r !== false) return r;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      print(`${what}: ${e.message}; retrying`);
    }
    if (Date.now() > deadline) throw new Error(`${what}: timed out`);
    sleep(2000);
  }
}

// Only mongodb-0 holds the root user before the set exists.
const seed = retry('connect to ' + hosts[0], () => {
  const c = new Mongo(`mongodb://${rootUser}:${rootPass}@${hosts[0]}/admin?directConnection=true&authSource=admin`);
  c.getDB('admin').runCommand({ ping: 1 });
  return c;
}, 600);
const admin = seed.getDB('admin');

const status = admin.runCommand({ replSetGetStatus: 1 });
if (status.ok === 1) {
  print(`replica set ${status.set} already initiated`);
} else if (status.codeName === 'NotYetInitialized') {
  const config = { _id: rsName, members: hosts.map((host, i) => ({ _id: i, host })) };
  // Fails until every member answers (its pod may still be starting).
  retry('replSetInitiate', () => {
    const r = admin.runCommand({ replSetInitiate: config });
    if (r.ok !== 1 && r.codeName !== 'AlreadyInitialized') throw new Error(r.errmsg || tojson(r));
    return true;
  }, 600);
  print(`replica set ${rsName} initiated with ${hosts.join(', ')}`);
} else {
  throw new Error('replSetGetStatus: ' + (status.errmsg || tojson(status)));
}

// Talk to the set (whoever is primary) from here on.
const rs = retry('connect to the replica set', () => {
  const c = new Mongo(`mongodb://${rootUser}:${rootPass}@${hosts.join(',')}/admin?replicaSet=${rsName}&authSource=admin`);
  const hello = c.getDB('admin').runCommand({ hello: 1 });
  if (!hello.primary) throw new Error('no primary yet');
  return c;
}, 600);

const appDb = rs.getDB(dbName);
const wc = { w: 'majority', wtimeout: 30000 };
if (appDb.getUser(appUser)) {
  appDb.updateUser(appUser, { pwd: appPass, roles: [{ role: 'readWrite', db: dbName }] }, wc);
  print(`user ${appUser} updated`);
} else {
  appDb.createUser({ user: appUser, pwd: appPass, roles: [{ role: 'readWrite', db: dbName }] }, wc);
  print(`user ${appUser} created on ${dbName}`);
}
